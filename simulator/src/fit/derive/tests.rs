//! The recipe applied to small synthetic profiles: what is copied, what is scaled, that nothing
//! else moves, and the errors.

use super::*;

/// The fitted number of `key` in a synthetic profile: `base` + the parameter's index.
fn fitted_number(key: &str, base: f64, source: &str) -> String {
    let i = FREE_PARAMETERS.iter().position(|p| p.key() == key).unwrap();
    format!("{{ value = {:?}, source = \"{source}\" }}", base + i as f64)
}

/// A small complete profile. Every fitted parameter is `{ value = base + its index, source =
/// fitted_source }` (a parameter the template does not know yet is added to its table, so
/// parameters added to the fit are tested too); `ddr` is the DDR peak; comments, a blank-line
/// layout, an odd spacing and a float written `2.5e1` are there for an edit to keep.
fn profile(soc: &str, arch: &str, ddr: f64, base: f64, fitted_source: &str) -> String {
    let mut doc: toml_edit::DocumentMut = template(soc, arch, ddr, base, fitted_source)
        .parse()
        .unwrap();
    for p in FREE_PARAMETERS {
        let (path, last) = p.key().rsplit_once('.').unwrap();
        let mut table = doc.as_item_mut();
        for part in path.split('.') {
            table = &mut table[part];
        }
        let table = table.as_table_like_mut().unwrap();
        if !table.contains_key(last) {
            let number = fitted_number(p.key(), base, fitted_source);
            table.insert(last, toml_edit::Item::Value(number.parse().unwrap()));
        }
    }
    doc.to_string()
}

/// The synthetic profile's text with the fitted parameters known when it was written.
fn template(soc: &str, arch: &str, ddr: f64, base: f64, fitted_source: &str) -> String {
    let fit = |key: &str| fitted_number(key, base, fitted_source);
    let n = |v: &str| format!("{{ value = {v}, source = \"assumption: a test\" }}");
    format!(
        r#"# A synthetic profile.
#   (two comment lines, one indented)
name = "synthetic"
soc = "{soc}"
npu_arch = "{arch}"

[npu]
clock_ghz = {clock}
onchip_bytes = {onchip}
onchip_usable_fraction = {half}
ddr_gbps = {{ value = {ddr:?}, source = "vendor claim: a test" }}
dma_bytes_per_cycle = {dma}
fixed_cycles = {fixed}
input_cycles_per_element =   {input}   # odd spacing, a trailing comment
output_cycles_per_element = {output}
launch.default = {{ value = "qnn-shared", source = "assumption: a test" }}
launch.qnn-copy.fixed_us = {launch}
launch.qnn-copy.host_gbps = {launch}
launch.qnn-shared.fixed_us = {launch}
launch.qnn-shared.host_gbps = {launch}
launch.fastrpc.fixed_us = {launch}
launch.fastrpc.host_gbps = {launch}
launch.cold_extra_us = {launch}
compile_base_ms = {e1}
compile_per_node_ms = {launch}

[npu.matrix]
requantized_output_cycles_per_element = {requant}

[npu.matrix.int8]
m = {tile}
n = {tile}
k = {tile}
cycles_per_tile = {i8tile}
node_fixed_cycles = {i8node}

[npu.matrix.fp16]
m = {tile}
n = {tile}
k = {tile}
cycles_per_tile = {f16tile}
node_fixed_cycles = {f16node}

[npu.vector]
units = {units}
width_bits = {width}
softmax_ops = {softmax}
requantize_ops = {requantize}
elementwise_ops = {elementwise}
topk_ops = {launch}
node_fixed_cycles = {vnode}
transpose_cycles_per_element = {transpose}

[[cpu.cores]]
name = "mid"
model = "a test core"
count = {units}
clock_ghz = {launch}
fp32_gflops = {launch}
fp16_gflops = {launch}
mem_gbps = {launch}
topk_cycles_per_key = {launch}
group_topk_cycles_per_key = {launch}
ranked_topk_cycles_per_key = {launch}
dense_efficiency = {half}
sparse_row_efficiency = {half}
sparse_tiled_efficiency = {half}
sparse_group_efficiency = {half}
materialized_efficiency = {half}
"#,
        clock = n("1.0"),
        onchip = n("8388608"),
        half = n("0.5"),
        launch = n("2.0"),
        e1 = n("2.5e1"),
        tile = n("32"),
        units = n("4"),
        width = n("1024"),
        dma = fit("npu.dma_bytes_per_cycle"),
        fixed = fit("npu.fixed_cycles"),
        input = fit("npu.input_cycles_per_element"),
        output = fit("npu.output_cycles_per_element"),
        requant = fit("npu.matrix.requantized_output_cycles_per_element"),
        i8tile = fit("npu.matrix.int8.cycles_per_tile"),
        i8node = fit("npu.matrix.int8.node_fixed_cycles"),
        f16tile = fit("npu.matrix.fp16.cycles_per_tile"),
        f16node = fit("npu.matrix.fp16.node_fixed_cycles"),
        softmax = fit("npu.vector.softmax_ops"),
        vnode = fit("npu.vector.node_fixed_cycles"),
        transpose = fit("npu.vector.transpose_cycles_per_element"),
        requantize = fit("npu.vector.requantize_ops"),
        elementwise = fit("npu.vector.elementwise_ops"),
    )
}

const FITTED: &str = "derived: fitted by `shadowattn soc fit` to a test";
const REASON: &str = "the same generation";

fn fit_text() -> ProfileText {
    ProfileText {
        file: "fit.toml".into(),
        text: profile("PART-X (socModel 52)", "HTP V73", 60.0, 10.0, FITTED),
    }
}

fn phone(ddr: f64) -> ProfileText {
    ProfileText {
        file: "phone.toml".into(),
        text: profile("Phone", "HTP V75", ddr, 1.0, "assumption: by hand"),
    }
}

fn reference() -> ProfileText {
    ProfileText {
        file: "ref.toml".into(),
        text: profile("Ref", "HTP V73", 40.0, 1.0, "assumption: by hand"),
    }
}

const RECIPE: &str = r#"
[[profile]]
target = "socs/phone.toml"
from = "socs/fit.toml"
taken_as = "socs/ref.toml"
reason = "the same generation"
differences = ["dma"]

[difference.dma]
parameter = "npu.dma_bytes_per_cycle"
unit = "B/cycle"
scaled_by = "npu.ddr_gbps"
scaled_by_unit = "GB/s"
source = "assumption: DMA follows DDR"
"#;

fn recipe() -> Recipe {
    Recipe::parse("recipe.toml", RECIPE).unwrap()
}

fn plain(derivation: &Derivation) -> Derivation {
    Derivation {
        differences: Vec::new(),
        taken_as: None,
        ..derivation.clone()
    }
}

fn derive(d: &Derivation, target: &ProfileText) -> Result<String> {
    derived_text(
        d,
        &FitSource::parse(&fit_text())?,
        target,
        Some(&reference()),
    )
}

/// The lines of `a` and `b` that differ, as (old, new).
fn changed_lines<'a>(a: &'a str, b: &'a str) -> Vec<(&'a str, &'a str)> {
    assert_eq!(a.lines().count(), b.lines().count(), "{b}");
    a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect()
}

#[test]
fn the_fit_is_read_with_its_part_and_socmodel() {
    let fit = FitSource::parse(&fit_text()).unwrap();
    assert_eq!(
        fit.label(),
        "the socModel 52 (PART-X, HTP V73) fit in fit.toml"
    );
    assert_eq!(fit.values.len(), FREE_PARAMETERS.len());
    for (i, (p, v)) in fit.values.iter().enumerate() {
        assert_eq!((*p, *v), (FREE_PARAMETERS[i], 10.0 + i as f64));
    }
}

#[test]
fn every_fitted_number_is_copied_with_its_source_and_nothing_else_changes() {
    let d = plain(&recipe().profiles[0]);
    let target = phone(80.0);
    let out = derive(&d, &target).unwrap();
    let got = SocProfile::parse("out", &out).unwrap();
    let copied = format!(
        "assumption: copied from the socModel 52 (PART-X, HTP V73) fit in fit.toml: {REASON}"
    );
    for (i, p) in FREE_PARAMETERS.iter().enumerate() {
        assert_eq!(p.get(&got), 10.0 + i as f64, "{p}");
    }
    let doc = toml_table("out", &out).unwrap();
    for p in FREE_PARAMETERS {
        assert_eq!(sourced("out", &doc, p.key()).unwrap().1, copied, "{p}");
    }
    // One changed line per fitted parameter; every changed line is a fitted one.
    let changed = changed_lines(&target.text, &out);
    assert_eq!(changed.len(), FREE_PARAMETERS.len(), "{changed:#?}");
    for (_, new) in &changed {
        assert!(new.contains(&copied), "{new}");
    }
    // Comments, the odd spacing and its trailing comment, `2.5e1` are kept byte for byte.
    assert!(out.starts_with("# A synthetic profile.\n#   (two comment lines, one indented)\n"));
    assert!(
        out.contains("input_cycles_per_element =   { value = 12.0"),
        "{out}"
    );
    assert!(
        out.contains("}   # odd spacing, a trailing comment\n"),
        "{out}"
    );
    assert!(out.contains("compile_base_ms = { value = 2.5e1,"), "{out}");
    // Deriving again changes nothing.
    let again = derive(
        &d,
        &ProfileText {
            text: out.clone(),
            ..target
        },
    )
    .unwrap();
    assert_eq!(again, out);
}

#[test]
fn a_value_equal_to_the_fits_keeps_its_text() {
    // The fit's npu.fixed_cycles is 10 (its index is 0); the target writes 10 as `1.0e1`.
    assert_eq!(FREE_PARAMETERS[0], Parameter::FixedCycles);
    let target = phone(80.0);
    let text = target.text.replace(
        "fixed_cycles = { value = 1.0,",
        "fixed_cycles = { value = 1.0e1,",
    );
    assert_ne!(text, target.text);
    let out = derive(
        &plain(&recipe().profiles[0]),
        &ProfileText { text, ..target },
    )
    .unwrap();
    let line = out.lines().find(|l| l.starts_with("fixed_cycles")).unwrap();
    assert!(
        line.starts_with("fixed_cycles = { value = 1.0e1, source = \"assumption: copied"),
        "{line}"
    );
}

#[test]
fn a_difference_scales_its_parameter_by_the_ratio_and_says_so() {
    let d = &recipe().profiles[0];
    let target = phone(80.0);
    let out = derive(d, &target).unwrap();
    let got = SocProfile::parse("out", &out).unwrap();
    // The fit's DMA rate (10 + its index) times 80 / 40 GB/s.
    let i = FREE_PARAMETERS
        .iter()
        .position(|&p| p == Parameter::DmaBytesPerCycle)
        .unwrap();
    let fitted = 10.0 + i as f64;
    assert_eq!(Parameter::DmaBytesPerCycle.get(&got), fitted * 2.0);
    let doc = toml_table("out", &out).unwrap();
    let source = sourced("out", &doc, "npu.dma_bytes_per_cycle").unwrap().1;
    assert_eq!(
        source,
        format!(
            "derived: the socModel 52 (PART-X, HTP V73) fit in fit.toml ({fitted} B/cycle, taken as ref.toml's) \
             scaled by the npu.ddr_gbps ratio 80 / 40 GB/s (phone.toml over ref.toml; assumption: DMA follows DDR); {REASON}"
        )
    );
    // The other parameters are copied as without the difference.
    let plain_out = derive(&plain(d), &target).unwrap();
    assert_eq!(changed_lines(&plain_out, &out).len(), 1);
}

#[test]
fn a_scaled_number_is_rounded_as_fitted_numbers_are() {
    let out = derive(&recipe().profiles[0], &phone(77.7)).unwrap();
    let got = SocProfile::parse("out", &out).unwrap();
    let i = FREE_PARAMETERS
        .iter()
        .position(|&p| p == Parameter::DmaBytesPerCycle)
        .unwrap();
    let exact = (10.0 + i as f64) * 77.7 / 40.0;
    assert_eq!(Parameter::DmaBytesPerCycle.get(&got), round_sig(exact));
    assert_ne!(round_sig(exact), exact);
}

#[test]
fn a_target_without_a_fitted_number_is_an_error_naming_it() {
    let target = phone(80.0);
    let text = target
        .text
        .lines()
        .filter(|l| !l.starts_with("transpose_cycles_per_element"))
        .map(|l| format!("{l}\n"))
        .collect();
    // The profile itself is incomplete, so its parse fails first and names the key.
    let e = derive(&recipe().profiles[0], &ProfileText { text, ..target }).unwrap_err();
    assert!(
        e.to_string().contains("transpose_cycles_per_element"),
        "{e}"
    );
    // The editor names a missing key on its own.
    let e = set_numbers(
        "phone.toml",
        "[npu]\n",
        &[(Key::Fitted(Parameter::SoftmaxOps), 1.0, "derived: x".into())],
    )
    .unwrap_err();
    assert!(
        matches!(&e, SimError::MissingKey { file, key } if file == "phone.toml" && key == "npu.vector.softmax_ops"),
        "{e}"
    );
}

#[test]
fn a_reference_without_the_scaling_number_is_an_error() {
    let fit = FitSource::parse(&fit_text()).unwrap();
    let r = reference();
    let bad = ProfileText {
        text: r.text.replace("ddr_gbps", "ddr_peak"),
        ..r
    };
    let e = derived_text(&recipe().profiles[0], &fit, &phone(80.0), Some(&bad)).unwrap_err();
    assert!(
        matches!(&e, DeriveError::Profile(SimError::MissingKey { file, key }) if file == "ref.toml" && key == "npu.ddr_gbps"),
        "{e}"
    );
}

#[test]
fn non_htp_profiles_and_unfitted_sources_are_refused() {
    let d = &recipe().profiles[0];
    let apu = ProfileText {
        file: "apu.toml".into(),
        text: profile("Phone", "APU 790", 80.0, 1.0, "assumption: by hand"),
    };
    let e = derive(d, &apu).unwrap_err();
    assert!(
        matches!(&e, DeriveError::NotHtp { file, npu_arch } if file == "apu.toml" && npu_arch == "APU 790"),
        "{e}"
    );
    let not_htp_fit = ProfileText {
        file: "aic.toml".into(),
        text: profile("AIC100 (socModel 63)", "AIC100", 60.0, 10.0, FITTED),
    };
    assert!(matches!(
        FitSource::parse(&not_htp_fit),
        Err(DeriveError::NotHtp { .. })
    ));
    let no_socmodel = ProfileText {
        file: "x.toml".into(),
        text: profile("PART-X", "HTP V73", 60.0, 10.0, FITTED),
    };
    assert!(matches!(
        FitSource::parse(&no_socmodel),
        Err(DeriveError::NotAFit { soc, .. }) if soc == "PART-X"
    ));
    let by_hand = ProfileText {
        file: "x.toml".into(),
        text: profile(
            "PART-X (socModel 52)",
            "HTP V73",
            60.0,
            10.0,
            "assumption: by hand",
        ),
    };
    let e = FitSource::parse(&by_hand).unwrap_err();
    assert!(
        matches!(&e, DeriveError::NotFitted { key, .. } if key == FREE_PARAMETERS[0].key()),
        "{e}"
    );
}

#[test]
fn bad_recipes_are_typed_errors() {
    let parse = |text: &str| Recipe::parse("r.toml", text).unwrap_err();
    assert!(matches!(
        parse("[[profile]]\ntarget = 1\n"),
        DeriveError::Recipe { .. }
    ));
    assert!(matches!(
        parse(&RECIPE.replace("reason =", "why =")),
        DeriveError::Recipe { .. }
    ));
    let e = parse(&RECIPE.replace("npu.dma_bytes_per_cycle", "npu.clock_ghz"));
    assert!(
        matches!(&e, DeriveError::UnknownParameter { key, .. } if key == "npu.clock_ghz"),
        "{e}"
    );
    assert!(matches!(
        parse(&RECIPE.replace("source = \"assumption:", "source = \"")),
        DeriveError::UnsourcedDifference { .. }
    ));
    let e = parse(&RECIPE.replace("differences = [\"dma\"]", "differences = [\"dmaa\"]"));
    assert!(
        matches!(&e, DeriveError::UnknownDifference { name, known, .. } if name == "dmaa" && known == "dma"),
        "{e}"
    );
    assert!(matches!(
        parse(&RECIPE.replace("taken_as = \"socs/ref.toml\"\n", "")),
        DeriveError::NoReference { .. }
    ));
    assert!(matches!(
        parse(&RECIPE.replace("socs/fit.toml", "socs/phone.toml")),
        DeriveError::FromItself { .. }
    ));
}

#[test]
fn targets_are_selected_by_name() {
    let r = recipe();
    assert_eq!(r.select(None).unwrap().len(), 1);
    assert_eq!(
        r.select(Some("phone")).unwrap()[0].target,
        "socs/phone.toml"
    );
    let e = r.select(Some("phonee")).unwrap_err();
    assert!(
        matches!(&e, DeriveError::UnknownTarget { known, .. } if known == "socs/phone.toml"),
        "{e}"
    );
}

#[test]
fn files_are_derived_from_the_recipes_folder_and_written_only_if_changed() {
    let dir = std::env::temp_dir().join(format!("shadowattn-derive-{}", std::process::id()));
    let socs = dir.join("socs");
    std::fs::create_dir_all(&socs).unwrap();
    for (name, p) in [
        ("fit", fit_text()),
        ("phone", phone(80.0)),
        ("ref", reference()),
    ] {
        std::fs::write(socs.join(format!("{name}.toml")), p.text).unwrap();
    }
    let d = derive_in(&dir, &recipe().profiles[0]).unwrap();
    assert_eq!(d.path, socs.join("phone.toml"));
    assert_ne!(d.old, d.new);
    assert!(write(&d).unwrap());
    let again = derive_in(&dir, &recipe().profiles[0]).unwrap();
    assert_eq!(again.old, d.new);
    assert!(!write(&again).unwrap());
    std::fs::remove_file(socs.join("fit.toml")).unwrap();
    let e = derive_in(&dir, &recipe().profiles[0]).unwrap_err();
    assert!(matches!(e, DeriveError::Io { action: "read", .. }), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
