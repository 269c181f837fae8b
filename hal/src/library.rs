//! The search for a vendor library that every backend loader shares: an explicit path, then the
//! path in an environment variable, then backend-specific places, then candidate names for the
//! dynamic loader. The first place that opens wins; if none does, the failure lists every attempt
//! and why it failed, so a user can see at once which path to fix.

use std::fmt;
use std::path::{Path, PathBuf};

/// One place a loader looked for a library, and why it was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadAttempt {
    /// Path or library name tried.
    pub path: String,
    /// Where it came from (explicit path, environment variable, SDK, candidate name).
    pub origin: String,
    /// Why it failed.
    pub reason: String,
}

/// Failed attempts formatted one per line (`  path (origin): reason`), for error messages.
#[derive(Clone, Copy, Debug)]
pub struct Attempts<'a>(pub &'a [LoadAttempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {} ({}): {}", a.path, a.origin, a.reason)?;
        }
        Ok(())
    }
}

/// The places to look for a library, in order, each with its origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LibrarySearch {
    places: Vec<(String, String)>,
}

impl LibrarySearch {
    /// `explicit` first (if given), then `env_value` — the value of environment variable
    /// `env_var` — if set.
    pub fn new(explicit: Option<&Path>, env_var: &str, env_value: Option<PathBuf>) -> Self {
        let mut search = LibrarySearch::default();
        if let Some(p) = explicit {
            search = search.then(p.display().to_string(), "explicit path");
        }
        if let Some(p) = env_value {
            search = search.then(p.display().to_string(), format!("${env_var}"));
        }
        search
    }

    /// Adds one place, with where it came from.
    pub fn then(mut self, path: impl Into<String>, origin: impl Into<String>) -> Self {
        self.places.push((path.into(), origin.into()));
        self
    }

    /// Adds names for the dynamic loader to resolve.
    pub fn candidates(mut self, names: &[&str]) -> Self {
        self.places.extend(
            names
                .iter()
                .map(|n| (n.to_string(), "candidate name".to_string())),
        );
        self
    }

    /// The places, in search order, as (path, origin).
    pub fn places(&self) -> &[(String, String)] {
        &self.places
    }

    /// Opens the first place `open` accepts; otherwise every attempt with its reason, in order.
    pub fn open_first<T, E: fmt::Display>(
        &self,
        mut open: impl FnMut(&str) -> Result<T, E>,
    ) -> Result<T, Vec<LoadAttempt>> {
        let mut attempts = Vec::new();
        for (path, origin) in &self.places {
            match open(path) {
                Ok(library) => return Ok(library),
                Err(e) => attempts.push(LoadAttempt {
                    path: path.clone(),
                    origin: origin.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        Err(attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(explicit: Option<&str>, env: Option<&str>) -> LibrarySearch {
        LibrarySearch::new(
            explicit.map(Path::new),
            "VENDOR_LIB",
            env.map(PathBuf::from),
        )
        .then("/sdk/lib/libvendor.so", "$VENDOR_SDK")
        .candidates(&["libvendor.so.1", "libvendor.so"])
    }

    #[test]
    fn places_come_in_order_with_their_origins() {
        let s = search(Some("/my/lib.so"), Some("/env/lib.so"));
        let origins: Vec<&str> = s.places().iter().map(|(_, o)| o.as_str()).collect();
        assert_eq!(
            origins,
            [
                "explicit path",
                "$VENDOR_LIB",
                "$VENDOR_SDK",
                "candidate name",
                "candidate name"
            ]
        );
        assert_eq!(search(None, None).places().len(), 3);
    }

    #[test]
    fn the_first_place_that_opens_wins_and_later_ones_are_not_tried() {
        let mut tried = Vec::new();
        let opened = search(Some("/my/lib.so"), None).open_first(|p| {
            tried.push(p.to_string());
            if p == "/sdk/lib/libvendor.so" {
                Ok(p.len())
            } else {
                Err(format!("{p} not found"))
            }
        });
        assert_eq!(opened, Ok("/sdk/lib/libvendor.so".len()));
        assert_eq!(tried, ["/my/lib.so", "/sdk/lib/libvendor.so"]);
    }

    #[test]
    fn a_failed_search_lists_every_attempt_and_its_reason() {
        let attempts = search(None, Some("/env/lib.so"))
            .open_first(|p| Err::<(), _>(format!("cannot open {p}")))
            .unwrap_err();
        assert_eq!(attempts.len(), 4);
        assert_eq!(attempts[0].origin, "$VENDOR_LIB");
        assert_eq!(attempts[3].reason, "cannot open libvendor.so");
        let text = Attempts(&attempts).to_string();
        assert_eq!(text.lines().count(), 4);
        assert!(text.starts_with("  /env/lib.so ($VENDOR_LIB): cannot open /env/lib.so"));
    }
}
