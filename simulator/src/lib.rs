//! Cycle-approximate NPU simulator (not implemented yet: see the simulator issue).
