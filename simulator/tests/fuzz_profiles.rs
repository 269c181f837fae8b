//! Fuzzing SoC profile parsing (a stable-toolchain fuzzer: proptest mutations of the shipped
//! profiles, the seed corpus). Any input must give a profile or a typed error, never a panic.
//! A longer run: `PROPTEST_CASES=100000 cargo test -p shadowattn-simulator --test fuzz_profiles`.

use proptest::prelude::*;
use shadowattn_simulator::npu::profile::BUILTIN;
use shadowattn_simulator::SocProfile;

/// Byte edits: (position, byte, kind) with kind 0 = replace, 1 = insert, 2 = delete.
fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(pos, byte, kind) in edits {
        if v.is_empty() {
            v.push(byte);
            continue;
        }
        let at = pos % v.len();
        match kind % 3 {
            0 => v[at] = byte,
            1 => v.insert(at, byte),
            _ => {
                v.remove(at);
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(shadowattn_test_support::proptest_cases(512)))]
    #[test]
    fn mutated_profiles_never_panic(seed in 0usize..BUILTIN.len(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..12)) {
        let bytes = mutate(BUILTIN[seed].1.as_bytes(), &edits);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(p) = SocProfile::parse("fuzz.toml", &text) {
            // A profile that parses is usable: its cost model gives positive, finite times.
            let sim = shadowattn_simulator::SimBackend::new(p);
            let g = shadowattn_simulator::npu::graphs::int8_pilot_graph(1, 8, 16, 8);
            let c = sim.cost(&g);
            prop_assert!(c.launch_ns(false).is_finite() && c.launch_ns(false) > 0.0);
        }
    }

    #[test]
    fn numbers_out_of_range_are_typed_errors(value in prop_oneof![Just("0".to_string()), Just("-1.5".to_string()), Just("1e400".to_string()), Just("nan".to_string()), Just("inf".to_string()), any::<f64>().prop_map(|v| format!("{v:e}"))]) {
        let text = BUILTIN[1].1.replace("clock_ghz = { value = 1.5", &format!("clock_ghz = {{ value = {value}"));
        if let Err(e) = SocProfile::parse("fuzz.toml", &text) {
            prop_assert!(e.to_string().contains("fuzz.toml"), "{}", e);
        }
    }
}
