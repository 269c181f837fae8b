//! The search for a vendor library that every backend loader shares: an explicit path, then the
//! path in an environment variable, then backend-specific places, then candidate names for the
//! dynamic loader. The first place that opens wins; if none does, the failure lists every attempt
//! and why it failed, so a user can see at once which path to fix.
//!
//! [`LibraryError`] is what every vendor backend's error says about its library (wrapped as its
//! `Library` variant); with the `loader` feature, `DynamicLibrary` opens one library and
//! resolves its symbols into that error.

use crate::HalError;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[cfg(feature = "loader")]
mod dynamic;
#[cfg(feature = "loader")]
pub use dynamic::DynamicLibrary;

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

/// Why a vendor library cannot be used: the part of every vendor backend's error about finding,
/// opening and resolving its library. Each backend's error wraps it as its `Library` variant.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LibraryError {
    /// No place of the search gave a usable library; every attempt and its reason.
    #[error("no usable {library}; tried:\n{}", Attempts(attempts))]
    Load {
        /// What was searched for, in words (`QNN library`).
        library: &'static str,
        /// Every attempt, in search order.
        attempts: Vec<LoadAttempt>,
    },
    /// A library that the dynamic loader cannot open.
    #[error("{path}: cannot load: {detail}")]
    Open {
        /// The library.
        path: String,
        /// The loader's message.
        detail: String,
    },
    /// A library without a required exported symbol.
    #[error("{path}: missing symbol `{symbol}`")]
    MissingSymbol {
        /// The library.
        path: String,
        /// The symbol.
        symbol: String,
    },
}

impl LibraryError {
    /// This error at the HAL boundary for `backend`: a failed search keeps its attempts
    /// ([`HalError::Load`]); a library that opened but cannot be used is
    /// [`HalError::Unavailable`] with this message.
    pub fn into_hal(self, backend: &str) -> HalError {
        match self {
            LibraryError::Load { attempts, .. } => HalError::Load {
                backend: backend.into(),
                attempts,
            },
            other => HalError::Unavailable {
                backend: backend.into(),
                detail: other.to_string(),
            },
        }
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

    /// [`open_first`](Self::open_first) with a failed search as [`LibraryError::Load`] for
    /// `library` (what is searched for, in words: `QNN library`), in the caller's error type.
    pub fn find<T, E>(
        &self,
        library: &'static str,
        open: impl FnMut(&str) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: fmt::Display + From<LibraryError>,
    {
        self.open_first(open)
            .map_err(|attempts| LibraryError::Load { library, attempts }.into())
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

    #[test]
    fn a_failed_search_keeps_its_attempts_through_the_hal() {
        let attempts = search(None, None)
            .open_first(|p| Err::<(), _>(format!("cannot open {p}")))
            .unwrap_err();
        let e = search(None, None)
            .find("vendor library", |p| {
                Err::<(), _>(LibraryError::Open {
                    path: p.into(),
                    detail: "not found".into(),
                })
            })
            .unwrap_err();
        let LibraryError::Load {
            library,
            attempts: found,
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(*library, "vendor library");
        assert_eq!(
            found[0].reason,
            "/sdk/lib/libvendor.so: cannot load: not found"
        );
        let e = LibraryError::Load {
            library: "vendor library",
            attempts: attempts.clone(),
        };
        assert!(e.to_string().starts_with(
            "no usable vendor library; tried:\n  /sdk/lib/libvendor.so ($VENDOR_SDK)"
        ));
        assert_eq!(
            e.into_hal("vendor"),
            HalError::Load {
                backend: "vendor".into(),
                attempts
            }
        );
        let e = LibraryError::MissingSymbol {
            path: "/lib/libvendor.so".into(),
            symbol: "vendor_init".into(),
        };
        assert_eq!(
            e.into_hal("vendor").to_string(),
            "backend `vendor` is unavailable: /lib/libvendor.so: missing symbol `vendor_init`"
        );
    }
}
