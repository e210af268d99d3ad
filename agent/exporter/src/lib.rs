//! `edge-exporter`: counters, gauges and exponential histograms for game servers.
#![deny(missing_docs)]
