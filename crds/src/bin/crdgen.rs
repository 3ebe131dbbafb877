//! Writes the CRD YAML of every kind into `crds/yaml/` and into the Helm
//! chart's `crds/` directory (or only into the directory given as the first
//! argument). The committed files are checked against this output by
//! `crds/tests/generated.rs`, so the chart can never carry a stale copy.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dirs = match std::env::args_os().nth(1) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![
            root.join("yaml"),
            root.join("../charts/mlctl-operator/crds"),
        ],
    };
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, yaml) in mlctl_crds::crd_yamls()? {
            let path = dir.join(file);
            std::fs::write(&path, yaml)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
