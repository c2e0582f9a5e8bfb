"""Pictures: the ECG on standard paper with beats and per-window P(AF), RR tachogram and Poincaré plot."""
