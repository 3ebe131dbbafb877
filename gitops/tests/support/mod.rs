//! Test support: an in-memory GitHub (REST endpoints used by mlctl, with GitHub's documented
//! response shapes) behind a tiny HTTP/1.1 server on 127.0.0.1 and an ephemeral port.
//! The server runs on its own thread and is stopped by the guard's Drop.

// Test-only support code: panicking on a malformed request is the right failure here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const OWNER: &str = "acme";
pub const REPO: &str = "gitops";
/// Files larger than this come without content from the contents endpoint (GitHub: 1 MB).
pub const LARGE_FILE: usize = 1024 * 1024;
pub const INSTALLATION_TOKEN: &str = "ghs_installation_token";
pub const INSTALLATION_ID: u64 = 42;

#[derive(Debug, Clone)]
pub struct Pull {
    pub number: u64,
    pub state: String,
    pub merged_at: Option<String>,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub conclusion: String,
    pub summary: String,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub repo: String,
    pub sha: String,
    pub context: String,
    pub state: String,
    pub description: String,
}

/// A scripted failure: the next request matching `method` and `path_prefix` gets this answer.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    pub path_prefix: String,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

pub type Files = BTreeMap<String, String>;

#[derive(Debug, Default)]
pub struct State {
    /// commit sha → (files, parent, message)
    pub commits: BTreeMap<String, (Files, Option<String>, String)>,
    pub refs: BTreeMap<String, String>,
    pub pulls: Vec<Pull>,
    pub comments: Vec<Comment>,
    pub statuses: Vec<Status>,
    pub check_runs: Vec<CheckRun>,
    pub faults: VecDeque<Fault>,
    /// (method, path) of every request received.
    pub log: Vec<(String, String)>,
    pub auth_headers: Vec<String>,
    /// Connections answered never (fault status 1), kept open until the stub stops.
    held: Vec<TcpStream>,
    next_id: u64,
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn blob_sha(content: &str) -> String {
    hash(&["blob", content])
}

impl Fault {
    pub fn new(method: &'static str, path_prefix: &str, status: u16, message: &str) -> Fault {
        Fault {
            method,
            path_prefix: path_prefix.to_string(),
            status,
            headers: vec![],
            body: json!({ "message": message }),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl ToString) -> Fault {
        self.headers.push((name, value.to_string()));
        self
    }
}

impl State {
    pub fn commit(
        &mut self,
        branch: &str,
        files: BTreeMap<String, String>,
        message: &str,
    ) -> String {
        let parent = self.refs.get(branch).cloned();
        let sha = hash(&[
            "commit",
            &format!("{files:?}"),
            parent.as_deref().unwrap_or(""),
            message,
            &self.commits.len().to_string(),
        ]);
        self.commits
            .insert(sha.clone(), (files, parent, message.to_string()));
        self.refs.insert(branch.to_string(), sha.clone());
        sha
    }

    pub fn file(&self, git_ref: &str, path: &str) -> Option<String> {
        let sha = self
            .refs
            .get(git_ref)
            .cloned()
            .unwrap_or_else(|| git_ref.to_string());
        self.commits.get(&sha)?.0.get(path).cloned()
    }

    pub fn writes(&self) -> Vec<(String, String)> {
        self.log
            .iter()
            .filter(|(m, _)| m != "GET")
            .cloned()
            .collect()
    }

    fn pull_json(&self, p: &Pull) -> Value {
        json!({
            "url": format!("https://api.github.com/repos/{OWNER}/{REPO}/pulls/{}", p.number),
            "html_url": format!("https://github.com/{OWNER}/{REPO}/pull/{}", p.number),
            "number": p.number,
            "state": p.state,
            "title": p.title,
            "body": p.body,
            "merged_at": p.merged_at,
            "labels": p.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
            "head": {"label": format!("{OWNER}:{}", p.head), "ref": p.head, "sha": self.refs.get(&p.head).cloned().unwrap_or_default()},
            "base": {"label": format!("{OWNER}:{}", p.base), "ref": p.base},
        })
    }

    /// Merges an open PR: the base gets the head's files (a merge commit).
    pub fn merge(&mut self, number: u64) {
        let pull = self
            .pulls
            .iter()
            .find(|p| p.number == number)
            .cloned()
            .unwrap();
        let files = self.commits[&self.refs[&pull.head]].0.clone();
        let message = format!("Merge pull request #{number}\n\n{}", pull.body);
        self.commit(&pull.base, files, &message);
        let p = self.pulls.iter_mut().find(|p| p.number == number).unwrap();
        p.state = "closed".into();
        p.merged_at = Some(format!("2026-11-25T10:{:02}:00Z", number));
    }

    fn handle(&mut self, method: &str, target: &str, body: &Value) -> (u16, Value) {
        // GitHub Enterprise Server serves the same API under /api/v3.
        let target = target.strip_prefix("/api/v3").unwrap_or(target);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let q: BTreeMap<&str, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.replace("%3A", ":").replace("%2F", "/")))
            .collect();
        if path.starts_with("/app/installations/")
            && path.ends_with("/access_tokens")
            && method == "POST"
        {
            return (
                201,
                json!({"token": INSTALLATION_TOKEN, "expires_at": "2099-01-01T00:00:00Z", "permissions": {"contents": "write", "pull_requests": "write", "issues": "write", "statuses": "write", "checks": "write"}, "repository_selection": "selected"}),
            );
        }
        let prefix = format!("/repos/{OWNER}/{REPO}");
        let Some(rest) = path.strip_prefix(&prefix) else {
            if let Some(rest) = path.strip_prefix("/repos/") {
                // Another repository (the evaluated source commit).
                let parts: Vec<&str> = rest.splitn(4, '/').collect();
                if parts.len() == 4 && parts[2] == "statuses" && method == "POST" {
                    return self.add_status(&format!("{}/{}", parts[0], parts[1]), parts[3], body);
                }
                if parts.len() == 4 && parts[2] == "commits" && method == "GET" {
                    let sha = parts[3].trim_end_matches("/status");
                    return (
                        200,
                        self.status_list(&format!("{}/{}", parts[0], parts[1]), sha),
                    );
                }
            }
            return (404, json!({"message": "Not Found"}));
        };
        let not_found = (
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        );
        let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (method, segs.as_slice()) {
            ("GET", ["git", "ref", "heads", branch @ ..]) => {
                let branch = branch.join("/");
                match self.refs.get(&branch) {
                    Some(sha) => (
                        200,
                        json!({"ref": format!("refs/heads/{branch}"), "object": {"type": "commit", "sha": sha}}),
                    ),
                    None => not_found,
                }
            }
            ("GET", ["git", "blobs", sha]) => {
                let content = self
                    .commits
                    .values()
                    .flat_map(|(files, _, _)| files.values())
                    .find(|c| blob_sha(c) == *sha)
                    .cloned();
                match content {
                    Some(content) => (
                        200,
                        json!({"sha": sha, "size": content.len(), "encoding": "base64",
                        "content": base64::engine::general_purpose::STANDARD.encode(content.as_bytes())}),
                    ),
                    None => not_found,
                }
            }
            ("POST", ["git", "refs"]) => {
                let name = body["ref"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("refs/heads/")
                    .to_string();
                if self.refs.contains_key(&name) {
                    return (422, json!({"message": "Reference already exists"}));
                }
                let sha = body["sha"].as_str().unwrap().to_string();
                self.refs.insert(name.clone(), sha.clone());
                (
                    201,
                    json!({"ref": format!("refs/heads/{name}"), "object": {"type": "commit", "sha": sha}}),
                )
            }
            ("GET", ["contents", file @ ..]) => {
                let file = file.join("/");
                let git_ref = q.get("ref").cloned().unwrap_or_else(|| "main".into());
                match self.file(&git_ref, &file) {
                    // GitHub omits the content of files over 1 MB ("encoding": "none").
                    Some(content) if content.len() > LARGE_FILE => (
                        200,
                        json!({"type": "file", "encoding": "none", "size": content.len(), "path": file, "content": "", "sha": blob_sha(&content)}),
                    ),
                    Some(content) => {
                        let b64 =
                            base64::engine::general_purpose::STANDARD.encode(content.as_bytes());
                        // GitHub wraps the base64 content at 60 characters.
                        let wrapped: Vec<String> = b64
                            .as_bytes()
                            .chunks(60)
                            .map(|c| String::from_utf8_lossy(c).into_owned())
                            .collect();
                        (
                            200,
                            json!({"type": "file", "encoding": "base64", "size": content.len(), "name": file.rsplit('/').next(), "path": file, "content": wrapped.join("\n") + "\n", "sha": blob_sha(&content)}),
                        )
                    }
                    None => not_found,
                }
            }
            ("PUT", ["contents", file @ ..]) => {
                let file = file.join("/");
                let branch = body["branch"].as_str().unwrap().to_string();
                let Some(head) = self.refs.get(&branch).cloned() else {
                    return not_found;
                };
                let mut files = self.commits[&head].0.clone();
                match (files.get(&file), body.get("sha").and_then(Value::as_str)) {
                    (Some(current), Some(sha)) if blob_sha(current) != sha => {
                        return (
                            409,
                            json!({"message": format!("{file} does not match {sha}")}),
                        );
                    }
                    (Some(_), None) => {
                        return (
                            422,
                            json!({"message": "Invalid request.\n\n\"sha\" wasn't supplied."}),
                        );
                    }
                    _ => {}
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(body["content"].as_str().unwrap())
                    .unwrap();
                let content = String::from_utf8(bytes).unwrap();
                files.insert(file.clone(), content.clone());
                let sha = self.commit(&branch, files, body["message"].as_str().unwrap());
                (
                    200,
                    json!({"content": {"path": file, "sha": blob_sha(&content)}, "commit": {"sha": sha, "message": body["message"]}}),
                )
            }
            ("GET", ["pulls"]) => {
                let head = q.get("head").cloned().unwrap_or_default();
                let state = q.get("state").cloned().unwrap_or_else(|| "open".into());
                let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let mut list: Vec<Value> = self
                    .pulls
                    .iter()
                    .rev()
                    .filter(|p| head.is_empty() || format!("{OWNER}:{}", p.head) == head)
                    .filter(|p| state == "all" || p.state == state)
                    .map(|p| self.pull_json(p))
                    .collect();
                if page > 1 {
                    list.clear();
                }
                (200, Value::Array(list))
            }
            ("POST", ["pulls"]) => {
                let head = body["head"].as_str().unwrap().to_string();
                if self
                    .pulls
                    .iter()
                    .any(|p| p.head == head && p.state == "open")
                {
                    return (
                        422,
                        json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {OWNER}:{head}.")}]}),
                    );
                }
                let pull = Pull {
                    number: self.pulls.len() as u64 + 1,
                    state: "open".into(),
                    merged_at: None,
                    head,
                    base: body["base"].as_str().unwrap().into(),
                    title: body["title"].as_str().unwrap().into(),
                    body: body["body"].as_str().unwrap_or_default().into(),
                    labels: vec![],
                };
                let out = self.pull_json(&pull);
                self.pulls.push(pull);
                (201, out)
            }
            ("PATCH", ["pulls", n]) => {
                let n: u64 = n.parse().unwrap();
                let Some(p) = self.pulls.iter_mut().find(|p| p.number == n) else {
                    return not_found;
                };
                if let Some(t) = body["title"].as_str() {
                    p.title = t.into();
                }
                if let Some(b) = body["body"].as_str() {
                    p.body = b.into();
                }
                if let Some(s) = body["state"].as_str() {
                    p.state = s.into();
                }
                let p = p.clone();
                (200, self.pull_json(&p))
            }
            ("POST", ["issues", n, "labels"]) => {
                let n: u64 = n.parse().unwrap();
                let Some(p) = self.pulls.iter_mut().find(|p| p.number == n) else {
                    return not_found;
                };
                for l in body["labels"].as_array().unwrap() {
                    let l = l.as_str().unwrap().to_string();
                    if !p.labels.contains(&l) {
                        p.labels.push(l);
                    }
                }
                (
                    200,
                    json!(
                        p.labels
                            .iter()
                            .map(|l| json!({"name": l}))
                            .collect::<Vec<_>>()
                    ),
                )
            }
            ("GET", ["issues", n, "comments"]) => {
                let n: u64 = n.parse().unwrap();
                let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let list: Vec<Value> = self
                    .comments
                    .iter()
                    .filter(|c| c.issue == n)
                    .skip((page - 1) * 100)
                    .take(100)
                    .map(|c| json!({"id": c.id, "body": c.body, "user": {"login": "someone"}}))
                    .collect();
                (200, Value::Array(list))
            }
            ("POST", ["issues", n, "comments"]) => {
                self.next_id += 1;
                let c = Comment {
                    id: 1000 + self.next_id,
                    issue: n.parse().unwrap(),
                    body: body["body"].as_str().unwrap().into(),
                };
                self.comments.push(c.clone());
                (201, json!({"id": c.id, "body": c.body}))
            }
            ("PATCH", ["issues", "comments", id]) => {
                let id: u64 = id.parse().unwrap();
                let Some(c) = self.comments.iter_mut().find(|c| c.id == id) else {
                    return not_found;
                };
                c.body = body["body"].as_str().unwrap().into();
                (200, json!({"id": c.id, "body": c.body}))
            }
            ("GET", ["commits", sha, "status"]) => {
                (200, self.status_list(&format!("{OWNER}/{REPO}"), sha))
            }
            ("GET", ["installation"]) => (200, json!({"id": INSTALLATION_ID, "app_id": 1})),
            ("GET", ["commits", sha, "check-runs"]) => {
                let name = q.get("check_name").cloned().unwrap_or_default();
                let runs: Vec<Value> = self
                    .check_runs
                    .iter()
                    .filter(|r| r.head_sha == *sha && (name.is_empty() || r.name == name))
                    .map(|r| json!({"id": r.id, "name": r.name, "head_sha": r.head_sha, "status": "completed",
                        "conclusion": r.conclusion, "output": {"title": "", "summary": r.summary}}))
                    .collect();
                (200, json!({"total_count": runs.len(), "check_runs": runs}))
            }
            ("POST", ["check-runs"]) => {
                let run = CheckRun {
                    id: 5000 + self.check_runs.len() as u64,
                    name: body["name"].as_str().unwrap().into(),
                    head_sha: body["head_sha"].as_str().unwrap().into(),
                    conclusion: body["conclusion"].as_str().unwrap().into(),
                    summary: body["output"]["summary"].as_str().unwrap().into(),
                };
                self.check_runs.push(run.clone());
                (201, json!({"id": run.id, "name": run.name}))
            }
            ("PATCH", ["check-runs", id]) => {
                let id: u64 = id.parse().unwrap();
                let Some(run) = self.check_runs.iter_mut().find(|r| r.id == id) else {
                    return not_found;
                };
                run.conclusion = body["conclusion"].as_str().unwrap().into();
                run.summary = body["output"]["summary"].as_str().unwrap().into();
                (200, json!({"id": id}))
            }
            ("POST", ["statuses", sha]) => self.add_status(&format!("{OWNER}/{REPO}"), sha, body),
            _ => not_found,
        }
    }

    /// The combined status: the latest status per context.
    fn status_list(&self, repo: &str, sha: &str) -> Value {
        let mut latest: BTreeMap<String, &Status> = BTreeMap::new();
        for s in self
            .statuses
            .iter()
            .filter(|s| s.sha == sha && s.repo == repo)
        {
            latest.insert(s.context.clone(), s);
        }
        let list: Vec<Value> = latest
            .values()
            .map(|s| json!({"context": s.context, "state": s.state, "description": s.description}))
            .collect();
        json!({"state": "success", "sha": sha, "statuses": list})
    }

    fn add_status(&mut self, repo: &str, sha: &str, body: &Value) -> (u16, Value) {
        let s = Status {
            repo: repo.into(),
            sha: sha.into(),
            context: body["context"].as_str().unwrap().into(),
            state: body["state"].as_str().unwrap().into(),
            description: body["description"].as_str().unwrap_or_default().into(),
        };
        self.statuses.push(s.clone());
        (201, json!({"context": s.context, "state": s.state}))
    }
}

pub struct StubGitHub {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StubGitHub {
    pub fn start() -> StubGitHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &state);
                    }
                }
            })
        };
        StubGitHub {
            url: format!("http://{addr}"),
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

impl Drop for StubGitHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // One request per connection (`connection: close`), so a single thread serves all.
    {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut length = 0usize;
        let mut auth = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "authorization" => auth = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, headers, reply) = {
            let mut s = state.lock().unwrap();
            s.log.push((method.clone(), target.clone()));
            s.auth_headers.push(auth);
            let fault = s
                .faults
                .iter()
                .position(|f| f.method == method && target.starts_with(&f.path_prefix));
            match fault.and_then(|i| s.faults.remove(i)) {
                // Status 0: drop the connection without an answer.
                Some(f) if f.status == 0 => return,
                // Status 1: act on the request, then never answer (a write
                // that landed while the answer was lost).
                Some(f) if f.status == 1 => {
                    let _ = s.handle(&method, &target, &body);
                    s.held.push(stream);
                    return;
                }
                Some(f) => (f.status, f.headers, f.body),
                None => {
                    let (status, reply) = s.handle(&method, &target, &body);
                    (status, vec![], reply)
                }
            }
        };
        let text = reply.to_string();
        let mut response = format!(
            "HTTP/1.1 {status} Stub\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n",
            text.len()
        );
        for (name, value) in headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&text);
        let mut out = &stream;
        let _ = out.write_all(response.as_bytes());
    }
}
