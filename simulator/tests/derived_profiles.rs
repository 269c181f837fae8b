//! The committed derived profiles are what `simulator/derived-profiles.toml` derives from the
//! committed fits: a hand edit of a copied number, or a refit without `soc derive`, fails here.

use shadowattn_simulator::fit::derive::{derive_in, Recipe};
use std::path::Path;

#[test]
fn the_derived_profiles_are_what_the_recipe_derives_from_the_committed_fits() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let recipe = Recipe::load(&dir.join("derived-profiles.toml")).unwrap();
    assert!(!recipe.profiles.is_empty());
    for derivation in &recipe.profiles {
        let derived = derive_in(dir, derivation).unwrap();
        let first = derived
            .old
            .lines()
            .zip(derived.new.lines())
            .find(|(a, b)| a != b);
        assert!(
            first.is_none() && derived.old == derived.new,
            "{} is not what simulator/derived-profiles.toml derives from {}: run \
             `cargo run -p shadowattn-cli -- soc derive --recipe simulator/derived-profiles.toml` \
             (ci/fit-profiles.sh runs it after the fits) and commit the result; first difference:\n\
             -{}\n+{}",
            derived.path.display(),
            derivation.from,
            first.map_or("", |f| f.0),
            first.map_or("", |f| f.1),
        );
    }
}
