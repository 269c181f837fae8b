//! Every `shadowattn` command in the README's shell blocks runs as written and succeeds.

use shadowattn_test_support::missing_dependency;
use std::path::{Path, PathBuf};
use std::process::Command;

const PREFIX: &str = "cargo run --release -p shadowattn-cli -- ";

/// How the README names the model `ci/model.sh` fetches (the script prints its path), and the
/// word that stands for it until the test knows the path.
const MODEL_SH: &str = "\"$(bash ci/model.sh)\"";
const MODEL: &str = "<smollm2>";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Environment assignments and arguments of one README command.
type ReadmeCommand = (Vec<(String, String)>, Vec<String>);

/// Every CLI command in ```sh blocks.
fn readme_commands() -> Vec<ReadmeCommand> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = line.split("  #").next().unwrap().trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        let full = (std::mem::take(&mut pending) + line).replace(MODEL_SH, MODEL);
        let mut words: Vec<String> = full.split_whitespace().map(str::to_string).collect();
        let mut env = Vec::new();
        while words
            .first()
            .is_some_and(|w| w.contains('=') && !w.starts_with('-'))
        {
            let w = words.remove(0);
            let (k, v) = w.split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
        }
        let rest = words.join(" ");
        if let Some(args) = rest.strip_prefix(PREFIX.trim_end()) {
            commands.push((env, args.split_whitespace().map(str::to_string).collect()));
        }
    }
    commands
}

/// Repository-relative paths in arguments become absolute (the commands run in a scratch folder).
fn absolute(arg: &str) -> String {
    let (prefix, path) = arg.strip_prefix("sim:").map_or(("", arg), |p| ("sim:", p));
    let candidate = repo().join(path);
    if path.contains('/') && candidate.exists() {
        format!("{prefix}{}", candidate.display())
    } else {
        arg.to_string()
    }
}

fn qnn_library() -> Option<String> {
    let target = shadowattn_test_support::target_dir(env!("CARGO_TARGET_TMPDIR"));
    shadowattn_test_support::qnn_emulator(&target).map(|p| p.display().to_string())
}

#[test]
fn every_readme_command_succeeds() {
    let commands = readme_commands();
    assert!(
        commands.len() >= 10,
        "found only {} commands",
        commands.len()
    );
    let scratch =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("readme-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let target = shadowattn_test_support::target_dir(env!("CARGO_TARGET_TMPDIR"));
    let shim = shadowattn_test_support::neuron_shim(&target).unwrap();
    let qnn = qnn_library();
    let mut plots = Vec::new();
    for (env, args) in commands {
        let needs_qnn = args
            .iter()
            .any(|a| a.starts_with("qnn") || a == "--soc-model");
        if needs_qnn && qnn.is_none() {
            missing_dependency(
                "Qualcomm HTP emulator",
                &format!("for `shadowattn {}`", args.join(" ")),
            );
            continue;
        }
        let mut args: Vec<String> = args.iter().map(|a| absolute(a)).collect();
        if args.iter().any(|a| a == MODEL) {
            let Some(model) = shadowattn_test_support::smollm2_or_skip(&target) else {
                continue;
            };
            for a in args.iter_mut().filter(|a| *a == MODEL) {
                *a = model.display().to_string();
            }
        }
        let model = args.iter().skip_while(|a| *a != "--model").nth(1).cloned();
        if model.is_some_and(|m| !Path::new(&m).exists()) {
            missing_dependency("the SmolLM2 model", "run `bash ci/model.sh`");
            continue;
        }
        // The real-model evaluation and calibration as written take most of an hour and a
        // minute: run the same commands on the smallest text slices and calibration that still
        // exercise every stage.
        let calibration = ["--calibration-window", "24", "--calibration-windows", "1"];
        match args.first().map(String::as_str) {
            Some("eval") if args.iter().any(|a| a == "--calibration") => {
                args.extend(["--window", "48", "--max-windows", "1"].map(String::from));
            }
            Some("eval") => {
                args.extend(["--window", "48", "--max-windows", "1"].map(String::from));
                args.extend(calibration.map(String::from));
                args.extend(["--mass-window", "24", "--ratios", "0.3"].map(String::from));
            }
            Some("calibrate") if args.iter().any(|a| a == "--model") => {
                args.extend(calibration.map(String::from));
            }
            _ => {}
        }
        if args.first().is_some_and(|a| a == "soc")
            && args.get(1).is_some_and(|a| a == "fit" || a == "check")
            && !args.iter().any(|a| a == "--grid")
        {
            // The designed grid takes ~30 s per command in a test build: the small grid runs
            // the same steps.
            args.extend(["--grid", "small"].map(String::from));
        }
        // A chart the README shows (`--plot docs/img/…`) is drawn in the scratch folder, not
        // over the committed image.
        for i in 1..args.len() {
            if args[i - 1] == "--plot" {
                let name = Path::new(&args[i]).file_name().unwrap().to_owned();
                args[i] = name.to_string_lossy().into_owned();
                plots.push(scratch.join(name));
            }
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shadowattn"));
        cmd.current_dir(&scratch).args(&args);
        if let Some(q) = &qnn {
            cmd.env("SHADOWATTN_QNN_LIB", q);
        }
        for (k, v) in &env {
            let v = if k == "SHADOWATTN_NEURON_LIB" {
                shim.display().to_string()
            } else {
                absolute(v)
            };
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "`shadowattn {}` exited {:?}:\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(Path::new(&scratch.join("calibration.json")).exists());
    if shadowattn_test_support::smollm2_or_skip(&target).is_some() {
        assert!(Path::new(&scratch.join("cal.json")).exists());
    }
    assert!(Path::new(&scratch.join("conformance.xml")).exists());
    assert!(Path::new(&scratch.join("trace.json")).exists());
    assert!(plots.len() >= 2, "{plots:?}");
    for plot in &plots {
        let svg = std::fs::read_to_string(plot).unwrap_or_else(|e| panic!("{plot:?}: {e}"));
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{plot:?}: {e}"));
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}
