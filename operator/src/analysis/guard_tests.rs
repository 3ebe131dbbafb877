use super::*;

fn list(entries: &[&str]) -> AllowList {
    let entries = entries.iter().map(|e| e.parse().unwrap()).collect();
    AllowList::new(entries, "cluster.local")
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

#[test]
fn entries_parse_and_bad_ones_say_why() {
    let parsed: Vec<AllowEntry> = [
        "in-cluster",
        "Prom.Example.com.",
        "*.corp.io",
        "10.0.0.0/8",
        "::1",
        "127.0.0.1",
    ]
    .iter()
    .map(|e| e.parse().unwrap())
    .collect();
    assert_eq!(
        parsed,
        vec![
            AllowEntry::InCluster,
            AllowEntry::Host("prom.example.com".into()),
            AllowEntry::Suffix(".corp.io".into()),
            AllowEntry::Network("10.0.0.0/8".parse().unwrap()),
            AllowEntry::Network("::1/128".parse().unwrap()),
            AllowEntry::Network("127.0.0.1/32".parse().unwrap()),
        ]
    );
    for (bad, why) in [
        ("10.0.0.0/33", "prefix length must be 0-32"),
        ("300.1.1.1/8", "not an IP address or CIDR"),
        ("*.a_b", "not a *.domain wildcard"),
        ("http://x", "write the host name, not a URL"),
        ("a..b", "not a host name"),
    ] {
        let e = bad.parse::<AllowEntry>().unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn link_local_and_metadata_addresses_are_always_refused() {
    for ip in [
        "169.254.169.254",
        "169.254.0.1",
        "100.100.100.200",
        "fe80::1",
        "febf::1",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(always_refused(ip), "{ip}");
        let everything = list(&["0.0.0.0/0", "::/0"]);
        assert!(
            !everything.permits_ip(ip, true),
            "{ip} even with a catch-all"
        );
    }
    for ip in [
        "10.0.0.1",
        "100.100.100.201",
        "fd00:ec2::253",
        "8.8.8.8",
        "fec0::1",
    ] {
        assert!(!always_refused(ip.parse().unwrap()), "{ip}");
    }
}

#[test]
fn loopback_needs_a_network_entry_even_behind_an_allowed_name() {
    let by_name = list(&["localhost", "in-cluster"]);
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(!by_name.permits_ip(loopback, true));
    assert!(!by_name.permits_ip("::1".parse().unwrap(), true));
    assert!(!by_name.permits_ip("0.0.0.0".parse().unwrap(), true));
    assert!(
        by_name.permits_ip("10.96.0.12".parse().unwrap(), true),
        "a Service's ClusterIP"
    );
    assert!(!by_name.permits_ip("10.96.0.12".parse().unwrap(), false));
    let with_loopback = list(&["127.0.0.1/32"]);
    assert!(with_loopback.permits_ip(loopback, false));
    assert!(!with_loopback.permits_ip("127.0.0.2".parse().unwrap(), false));
    assert!(with_loopback.permits_ip("::ffff:127.0.0.1".parse().unwrap(), false));
}

#[test]
fn urls_are_checked_before_any_connection() {
    let allow = list(&["in-cluster", "127.0.0.1/32", "*.example.com", "prom.corp"]);
    for ok in [
        "http://127.0.0.1:9090/",
        "https://a.example.com/x",
        "http://PROM.corp:9090",
        "http://prometheus.monitoring:9090",
        "http://2130706433/", // 127.0.0.1 written as a number
    ] {
        assert_eq!(allow.check_url(&url(ok)), Ok(()), "{ok}");
    }
    let e = allow
        .check_url(&url("http://169.254.169.254/latest/meta-data"))
        .unwrap_err();
    assert!(e.contains("link-local or a cloud metadata address"), "{e}");
    let e = allow
        .check_url(&url("http://[fd00:ec2::254]/"))
        .unwrap_err();
    assert!(e.contains("cloud metadata"), "{e}");
    let e = allow.check_url(&url("http://127.0.0.2/")).unwrap_err();
    assert_eq!(
        e,
        "address 127.0.0.2 is not in the operator's allow-list (--analysis-allow)"
    );
    let e = allow.check_url(&url("http://[::1]:80/")).unwrap_err();
    assert!(e.starts_with("address ::1 is not"), "{e}");

    let names_only = list(&["in-cluster", "prom.corp"]);
    let e = names_only
        .check_url(&url("http://example.com.evil.io/"))
        .unwrap_err();
    assert_eq!(
        e,
        "host \"example.com.evil.io\" is not in the operator's allow-list (--analysis-allow)"
    );
    assert!(
        names_only
            .check_url(&url("http://localhost:8080/"))
            .is_err()
    );
    assert!(names_only.check_url(&url("http://10.0.0.1/")).is_err());
}

#[test]
fn service_names_resolve_only_as_the_cluster_fqdn() {
    let allow = list(&["in-cluster"]);
    let fqdn = |host: &str| match allow.route(host) {
        Some(Route::Service(f)) => Some(f),
        _ => None,
    };
    assert_eq!(
        fqdn("prometheus.monitoring").as_deref(),
        Some("prometheus.monitoring.svc.cluster.local.")
    );
    assert_eq!(
        fqdn("prometheus.monitoring.svc").as_deref(),
        Some("prometheus.monitoring.svc.cluster.local.")
    );
    assert_eq!(
        fqdn("prometheus.monitoring.svc.cluster.local.").as_deref(),
        Some("prometheus.monitoring.svc.cluster.local.")
    );
    // `evil.com` can only mean Service `evil` in namespace `com`.
    assert_eq!(
        fqdn("evil.com").as_deref(),
        Some("evil.com.svc.cluster.local.")
    );
    for not_a_service in [
        "a.b.c",
        "example.co.uk",
        "x.svc.cluster.local",
        "a.b.svc.other.domain",
        "under_score.ns",
    ] {
        assert_eq!(fqdn(not_a_service), None, "{not_a_service}");
    }
    let other_domain = AllowList::new(vec![AllowEntry::InCluster], "corp.internal");
    assert_eq!(
        other_domain.route("api.team.svc.corp.internal"),
        Some(Route::Service("api.team.svc.corp.internal.".into()))
    );
    // A name the list allows by name is resolved as written.
    let named = list(&["in-cluster", "evil.com"]);
    assert_eq!(named.route("evil.com"), Some(Route::ByName));
}

#[tokio::test]
async fn the_resolver_hands_out_only_permitted_addresses() {
    // `localhost` (in /etc/hosts) allowed by name still resolves to loopback:
    // refused without a network entry, as a rebinding name would be.
    let by_name = Resolver::new(Arc::new(list(&["localhost"])));
    let e = by_name
        .resolve("localhost".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("none of which the operator's allow-list"),
        "{e}"
    );
    let with_loopback = Resolver::new(Arc::new(list(&["localhost", "127.0.0.1/32"])));
    let addrs: Vec<SocketAddr> = with_loopback
        .resolve("localhost".parse().unwrap())
        .await
        .ok()
        .unwrap()
        .collect();
    assert!(!addrs.is_empty());
    assert!(
        addrs.iter().all(|a| a.ip() == IpAddr::from([127, 0, 0, 1])),
        "{addrs:?}"
    );
    let nothing = Resolver::new(Arc::new(list(&["in-cluster"])));
    let e = nothing
        .resolve("localhost".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("not in the operator's allow-list"),
        "{e}"
    );
}
