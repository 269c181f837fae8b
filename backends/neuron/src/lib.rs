//! MediaTek NeuroPilot NPU backend, loaded at run time (not implemented yet: see the Neuron backend issue).
