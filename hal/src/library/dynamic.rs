//! Opening one vendor library and resolving its symbols, failures being [`LibraryError`]s that
//! name the library (feature `loader`). The only `unsafe` code of the HAL: each vendor loader
//! vouches, at its call, for the library it opens and the C type of each symbol it takes.

#![allow(unsafe_code)]

use super::LibraryError;

/// A library opened at run time, with the path it was opened from (for error messages).
#[derive(Debug)]
pub struct DynamicLibrary {
    path: String,
    library: libloading::Library,
}

impl DynamicLibrary {
    /// Opens the library at `path` (a file, or a name the dynamic loader resolves).
    ///
    /// # Safety
    /// Opening runs the library's initialisers: `path` must name a library meant to be loaded
    /// by applications.
    pub unsafe fn open(path: &str) -> Result<Self, LibraryError> {
        // SAFETY: the caller vouches for the library's initialisers.
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|e| LibraryError::Open {
                path: path.to_string(),
                detail: e.to_string(),
            })?;
        Ok(DynamicLibrary {
            path: path.to_string(),
            library,
        })
    }

    /// Path the library was opened from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The value of exported symbol `name` (a function pointer, for the vendor APIs); a missing
    /// symbol is [`LibraryError::MissingSymbol`] naming it and this library.
    ///
    /// # Safety
    /// `T` must be the C type of that symbol, and the value must not be used after this library
    /// is dropped (keep the library beside it).
    pub unsafe fn symbol<T: Copy>(&self, name: &str) -> Result<T, LibraryError> {
        // SAFETY: the caller guarantees that `T` is the symbol's type and that the copy does not
        // outlive the library.
        let symbol = unsafe { self.library.get::<T>(name.as_bytes()) }.map_err(|_| {
            LibraryError::MissingSymbol {
                path: self.path.clone(),
                symbol: name.to_string(),
            }
        })?;
        Ok(*symbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cos = unsafe extern "C" fn(f64) -> f64;

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot open libraries")]
    fn symbols_resolve_and_missing_ones_are_named_with_their_library() {
        // SAFETY: the C maths library, whose initialisers any C program runs.
        let libm = unsafe { DynamicLibrary::open("libm.so.6") }.unwrap();
        assert_eq!(libm.path(), "libm.so.6");
        // SAFETY: `cos` is `double cos(double)`; `libm` outlives the call.
        let cos = unsafe { libm.symbol::<Cos>("cos") }.unwrap();
        // SAFETY: a pure function of its argument.
        assert_eq!(unsafe { cos(0.0) }, 1.0);
        // SAFETY: as above; the symbol is not exported, so nothing is called.
        let e = unsafe { libm.symbol::<Cos>("no_such_function") }.unwrap_err();
        assert_eq!(
            e,
            LibraryError::MissingSymbol {
                path: "libm.so.6".into(),
                symbol: "no_such_function".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "libm.so.6: missing symbol `no_such_function`"
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot open libraries")]
    fn a_library_that_does_not_open_is_named_with_the_loaders_reason() {
        // SAFETY: the path does not exist, so nothing is loaded.
        let e = unsafe { DynamicLibrary::open("/nonexistent/libvendor.so") }.unwrap_err();
        let LibraryError::Open { path, detail } = &e else {
            panic!("{e}")
        };
        assert_eq!(path, "/nonexistent/libvendor.so");
        assert!(!detail.is_empty());
        assert!(e
            .to_string()
            .starts_with("/nonexistent/libvendor.so: cannot load: "));
    }
}
