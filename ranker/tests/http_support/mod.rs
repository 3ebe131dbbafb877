//! Shared harness of the HTTP tests: starts the real `mlctl-ranker serve` on
//! 127.0.0.1:0 with a model file, learns its address from the JSON log, and kills
//! the child on every exit path (the guard's Drop).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A LightGBM 4.7.0 model (3 trees, 4 leaves, features bm25, ctr_7d, age), trained
/// by a few lines of Python; its scores for [`ROWS`] are [`EXPECTED`] (`predict(raw_score=True)`).
pub const MODEL: &str = r#"tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=2
objective=regression
feature_names=bm25 ctr_7d age
feature_infos=[-16.19569417798316:37.716688829102928] [-0.13257192077482693:0.14223783132430248] [-25.502791324615387:126.10788710395663]
tree_sizes=471 490 495

Tree=0
num_leaves=4
num_cat=0
split_feature=0 1 0
split_gain=14.9899 6.40652 2.37936
threshold=16.9874547457385 0.060860673791646322 7.504005631822241
decision_type=2 2 2
left_child=1 2 -1
right_child=-2 -3 -4
leaf_value=0.43173684202788165 0.50311111316084856 0.48604762058882484 0.45436263795955711
leaf_weight=95 72 42 91
leaf_count=95 72 42 91
internal_value=0.463333 0.450772 0.442806
internal_weight=300 228 186
internal_count=300 228 186
is_linear=0
shrinkage=1


Tree=1
num_leaves=4
num_cat=0
split_feature=0 1 2
split_gain=12.1419 5.21378 2.53733
threshold=16.9874547457385 0.063595802215904371 58.678786303234062
decision_type=2 2 2
left_child=1 2 -1
right_child=-2 -3 -4
leaf_value=-0.0086493046619953266 0.03579999870724148 0.023617459668053523 -0.032211466232935589
leaf_weight=117 72 36 75
leaf_count=117 72 36 75
internal_value=-5.26508e-10 -0.0113053 -0.0178533
internal_weight=300 228 192
internal_count=300 228 192
is_linear=0
shrinkage=0.1


Tree=2
num_leaves=4
num_cat=0
split_feature=0 1 1
split_gain=10.3494 4.36171 3.24889
threshold=11.518492519780439 -0.025045111114012513 0.063595802215904371
decision_type=2 2 2
left_child=2 -2 -1
right_child=1 -3 -4
leaf_value=-0.022100756441553435 -0.021542591303586961 0.029261068466606491 0.015700159470240276
leaf_weight=144 20 109 27
leaf_count=144 20 109 27
internal_value=4.96705e-11 0.0213845 -0.0161322
internal_weight=300 129 171
internal_count=300 129 171
is_linear=0
shrinkage=0.1


end of trees

feature_importances:
bm25=4
ctr_7d=4
age=1

parameters:
[boosting: gbdt]
[objective: regression]
[metric: l2]
[tree_learner: serial]
[device_type: cpu]
[data_sample_strategy: bagging]
[data: ]
[valid: ]
[num_iterations: 3]
[learning_rate: 0.1]
[num_leaves: 4]
[num_threads: 0]
[seed: 1]
[deterministic: 0]
[force_col_wise: 0]
[force_row_wise: 0]
[histogram_pool_size: -1]
[max_depth: -1]
[min_data_in_leaf: 5]
[min_sum_hessian_in_leaf: 0.001]
[bagging_fraction: 1]
[pos_bagging_fraction: 1]
[neg_bagging_fraction: 1]
[bagging_freq: 0]
[bagging_seed: 18467]
[bagging_by_query: 0]
[feature_fraction: 1]
[feature_fraction_bynode: 1]
[feature_fraction_seed: 26500]
[extra_trees: 0]
[extra_seed: 15724]
[early_stopping_round: 0]
[early_stopping_min_delta: 0]
[first_metric_only: 0]
[max_delta_step: 0]
[lambda_l1: 0]
[lambda_l2: 0]
[linear_lambda: 0]
[min_gain_to_split: 0]
[drop_rate: 0.1]
[max_drop: 50]
[skip_drop: 0.5]
[xgboost_dart_mode: 0]
[uniform_drop: 0]
[drop_seed: 6334]
[top_rate: 0.2]
[other_rate: 0.1]
[min_data_per_group: 100]
[max_cat_threshold: 32]
[cat_l2: 10]
[cat_smooth: 10]
[max_cat_to_onehot: 4]
[top_k: 20]
[monotone_constraints: ]
[monotone_constraints_method: basic]
[monotone_penalty: 0]
[feature_contri: ]
[forcedsplits_filename: ]
[refit_decay_rate: 0.9]
[cegb_tradeoff: 1]
[cegb_penalty_split: 0]
[cegb_penalty_feature_lazy: ]
[cegb_penalty_feature_coupled: ]
[path_smooth: 0]
[interaction_constraints: ]
[verbosity: -1]
[saved_feature_importance_type: 0]
[use_quantized_grad: 0]
[num_grad_quant_bins: 4]
[quant_train_renew_leaf: 0]
[stochastic_rounding: 1]
[linear_tree: 0]
[max_bin: 255]
[max_bin_by_feature: ]
[min_data_in_bin: 3]
[bin_construct_sample_cnt: 200000]
[data_random_seed: 41]
[is_enable_sparse: 1]
[enable_bundle: 1]
[use_missing: 1]
[zero_as_missing: 0]
[feature_pre_filter: 1]
[pre_partition: 0]
[two_round: 0]
[header: 0]
[label_column: ]
[weight_column: ]
[group_column: ]
[ignore_column: ]
[categorical_feature: ]
[forcedbins_filename: ]
[precise_float_parser: 0]
[parser_config_file: ]
[objective_seed: 19169]
[num_class: 1]
[is_unbalance: 0]
[scale_pos_weight: 1]
[sigmoid: 1]
[boost_from_average: 1]
[reg_sqrt: 0]
[alpha: 0.9]
[fair_c: 1]
[poisson_max_delta_step: 0.7]
[tweedie_variance_power: 1.5]
[lambdarank_truncation_level: 30]
[lambdarank_norm: 1]
[label_gain: ]
[lambdarank_position_bias_regularization: 0]
[eval_at: ]
[multi_error_top_k: 1]
[auc_mu_weights: ]
[num_machines: 1]
[local_listen_port: 12400]
[time_out: 120]
[machine_list_filename: ]
[machines: ]
[gpu_platform_id: -1]
[gpu_device_id: -1]
[gpu_device_id_list: ]
[gpu_use_dp: 0]
[num_gpu: 1]

end of parameters

pandas_categorical:null
"#;

/// Rows scored by Python (bm25, ctr_7d, age; NaN is missing).
pub const ROWS: [[f64; 3]; 5] = [
    [12.1, 0.03, 40.0],
    [30.0, 0.1, 10.0],
    [f64::NAN, 0.0, 50.0],
    [0.0, 0.0, 0.0],
    [5.5, 0.02, 90.0],
];

/// LightGBM's raw scores for [`ROWS`] (rows 2 and 3 tie).
pub const EXPECTED: [f64; 5] = [
    0.4749744017641683,
    0.5681721803346965,
    0.4009867809243329,
    0.4009867809243329,
    0.3774246193533926,
];

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "mlctl-ranker-http-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes the test model as `<dir>/model.txt` and returns its path.
    pub fn model(&self) -> PathBuf {
        let p = self.0.join("model.txt");
        std::fs::write(&p, MODEL).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server; dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    pub pid: u32,
}

/// How to start the server.
pub struct Launch<'a> {
    pub args: Vec<String>,
    pub env: Vec<(&'a str, String)>,
}

impl<'a> Launch<'a> {
    /// `serve --model-path <path> --model-name m --model-version v1 --listen 127.0.0.1:0`.
    pub fn new(model_path: &Path) -> Launch<'a> {
        Launch {
            args: vec![
                "--model-path".into(),
                model_path.display().to_string(),
                "--model-name".into(),
                "m".into(),
                "--model-version".into(),
                "v1".into(),
                "--model-revision".into(),
                "rev1".into(),
            ],
            env: Vec::new(),
        }
    }

    pub fn arg(mut self, a: &str, v: &str) -> Launch<'a> {
        self.args.push(a.into());
        self.args.push(v.into());
        self
    }

    pub fn env(mut self, k: &'a str, v: &str) -> Launch<'a> {
        self.env.push((k, v.into()));
        self
    }

    /// Starts the binary and waits (with a deadline) for its "listening" line.
    pub fn start(self) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlctl-ranker"));
        cmd.arg("serve")
            .args(&self.args)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("RUST_LOG", "info")
            .env_remove("MODEL_PATH")
            .env_remove("MODEL_NAME")
            .env_remove("MODEL_VERSION")
            .env_remove("MODEL_FORMAT")
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start mlctl-ranker");
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_address(&line) {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: String::new(),
            log,
            pid,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!(
                "the server did not log its address within 20 s:\n{}",
                server.log_text()
            ),
        }
        server
    }
}

fn listening_address(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    Some(fields.get("address")?.as_str()?.to_owned())
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The `/metrics` exposition text.
    pub async fn metrics(&self, client: &reqwest::Client) -> String {
        client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Polls /ready until 200, failing after `deadline` with the server's log.
    pub async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(self.url("/ready")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within 30 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM (through kill(1): the tests deny `unsafe`).
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {} failed", self.pid);
    }

    /// Waits for the process to exit, failing after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    // The package builds reqwest without a default TLS provider (the fetch module
    // installs ring); the tests speak plain HTTP but the builder still wants one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of one sample line (`name{labels} value`) in a Prometheus text
/// exposition; 0 when absent (a counter that never moved).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .unwrap_or(0.0)
}

/// A `:rank` body from rows (NaN written as null).
pub fn rank_body(rows: &[[f64; 3]]) -> String {
    let docs: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f: Vec<String> = r
                .iter()
                .map(|v| {
                    if v.is_nan() {
                        "null".into()
                    } else {
                        format!("{v:?}")
                    }
                })
                .collect();
            format!(r#"{{"id":"d{i}","features":[{}]}}"#, f.join(","))
        })
        .collect();
    format!(r#"{{"query":"q","documents":[{}]}}"#, docs.join(","))
}
