//! A simulator backend's expectations come from its profile's `[limits]`: one list of refusals
//! per limit (`expectations/npu/limits/simulator.toml`), not a copied file per profile.

use shadowattn_conformance::all_cases;
use shadowattn_conformance::expectations::{simulator_refusals, Expectations, Suite};
use shadowattn_simulator::npu::profile::{builtin_names, NpuLimits, BUILTIN};

#[test]
fn every_refusal_names_a_real_limit_and_real_cases() {
    let keys: Vec<&str> = NpuLimits::default()
        .entries()
        .iter()
        .map(|(k, _)| *k)
        .collect();
    let cases: Vec<String> = all_cases().into_iter().map(|c| c.name).collect();
    let refusals = simulator_refusals();
    assert!(!refusals.is_empty());
    for r in &refusals {
        assert!(
            keys.contains(&r.limit.as_str()),
            "unknown limit `{}`",
            r.limit
        );
        assert!(!r.cases.is_empty(), "{} refuses nothing", r.limit);
        for c in &r.cases {
            assert!(cases.contains(c), "{} names `{c}`, not a case", r.limit);
        }
    }
    // Every limit refuses something: a limit without refusals would be untested.
    for k in keys {
        assert!(refusals.iter().any(|r| r.limit == k), "no refusal of `{k}`");
    }
}

#[test]
fn each_profile_gets_the_refusals_of_the_limits_it_sets() {
    for name in builtin_names() {
        let backend = format!("sim:{name}");
        let (e, origin) = Expectations::builtin(Suite::Npu, &backend).unwrap();
        assert_eq!(e.backend, backend);
        assert!(
            origin.contains(&format!("simulator/socs/{name}.toml")),
            "{origin}"
        );
        let profile = shadowattn_simulator::SocProfile::builtin(name).unwrap();
        let want: usize = simulator_refusals()
            .iter()
            .filter(|r| profile.limits.refused().contains(&r.limit.as_str()))
            .map(|r| r.cases.len())
            .sum();
        assert_eq!(e.unsupported.len(), want, "{name}");
        for u in e.unsupported.values() {
            assert!(
                u.source.contains(&profile.limits.source),
                "{name}: {}",
                u.source
            );
        }
    }
    // HTP refuses all three limits, NNAPI-rules drivers INT32 MatMul outputs only.
    let count = |b: &str| {
        Expectations::builtin(Suite::Npu, b)
            .unwrap()
            .0
            .unsupported
            .len()
    };
    assert_eq!(count("sim:snapdragon-8-gen-3"), 32);
    assert_eq!(count("sim:dimensity-9300"), 30);
}

#[test]
fn a_profile_file_gets_its_own_limits() {
    let dir = std::env::temp_dir().join(format!("shadowattn-simexp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, sa8255) = BUILTIN.iter().find(|(n, _)| *n == "sa8255").unwrap();
    // The same SoC with INT32 MatMul outputs allowed: only the other two limits refuse.
    let text = sa8255.replace("int32_matmul_output = false", "int32_matmul_output = true");
    assert_ne!(&text, sa8255);
    let path = dir.join("my-soc.toml");
    std::fs::write(&path, text).unwrap();
    let backend = format!("sim:{}", path.display());
    let (e, origin) = Expectations::builtin(Suite::Npu, &backend).unwrap();
    assert!(origin.contains("my-soc.toml"), "{origin}");
    assert_eq!(e.unsupported.len(), 2, "{:?}", e.unsupported.keys());
    assert!(e.unsupported.contains_key("requantize_i32_to_i8"));
    // A profile that does not load has no built-in expectations (the run says why it fails).
    assert!(Expectations::builtin(Suite::Npu, "sim:/no/such/soc.toml").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
