//! `soc derive`: the committed phone profiles are up to date, `--check` fails on a hand edit
//! and names the command, and a run writes the derived file back.

mod common;
use common::shadowattn;
use std::path::Path;

/// The repository's recipe and the profiles it reads, copied into a fresh folder.
fn copy_of_the_recipe(dir: &Path) -> String {
    let simulator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../simulator");
    std::fs::create_dir_all(dir.join("socs")).unwrap();
    for name in [
        "sa8255",
        "snapdragon-8-gen-2",
        "snapdragon-8-gen-3",
        "snapdragon-8-elite",
    ] {
        let file = format!("socs/{name}.toml");
        std::fs::copy(simulator.join(&file), dir.join(&file)).unwrap();
    }
    let recipe = dir.join("derived-profiles.toml");
    std::fs::copy(simulator.join("derived-profiles.toml"), &recipe).unwrap();
    recipe.display().to_string()
}

#[test]
fn check_fails_on_a_hand_edit_and_a_run_undoes_it() {
    let dir = std::env::temp_dir().join(format!("shadowattn-soc-derive-{}", std::process::id()));
    let recipe = copy_of_the_recipe(&dir);
    let (code, stdout, stderr) = shadowattn(&["soc", "derive", "--recipe", &recipe, "--check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.matches("up to date: ").count(), 3, "{stdout}");

    let gen3 = dir.join("socs/snapdragon-8-gen-3.toml");
    let committed = std::fs::read_to_string(&gen3).unwrap();
    // The fitted softmax line as committed, e.g. `softmax_ops = { value = 54.863,`.
    let start = committed.find("softmax_ops = { value = ").unwrap();
    let line = &committed[start..start + committed[start..].find(',').unwrap() + 1];
    let edited = committed.replacen(line, "softmax_ops = { value = 90.0,", 1);
    assert_ne!(edited, committed, "the edit must hit the fitted line");
    std::fs::write(&gen3, &edited).unwrap();
    let (code, stdout, stderr) = shadowattn(&["soc", "derive", "--recipe", &recipe, "--check"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("out of date: ") && stdout.contains(&format!("+{line}")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("run `shadowattn soc derive --recipe {recipe}`")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&gen3).unwrap(),
        edited,
        "--check writes nothing"
    );

    let (code, stdout, stderr) = shadowattn(&[
        "soc",
        "derive",
        "--recipe",
        &recipe,
        "--only",
        "snapdragon-8-gen-3",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("wrote: ") && stdout.contains("(1 line(s) changed)"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&gen3).unwrap(), committed);

    let (code, _, stderr) =
        shadowattn(&["soc", "derive", "--recipe", &recipe, "--only", "pixel-9"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("derives no profile `pixel-9`"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
