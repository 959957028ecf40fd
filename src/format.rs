//! Format: the writes that create an empty data file (in progress).
