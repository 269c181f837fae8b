//! Conformance suite run against every backend (not implemented yet: see the conformance issue).
