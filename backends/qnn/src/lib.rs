//! Qualcomm QNN NPU backend, loaded at run time (not implemented yet: see the QNN backend issue).
