//! Charts and reports of measured rankings: `host rank --plot` ([`rankplot`]) and `host report`
//! ([`report`]: a sweep's results folder to `report.md` with its SVG charts and tables).
//!
//! Owns: the rank chart (GMSE vs bits, Pareto front, Lloyd-Max, Shannon bound) and the Markdown
//! report. Never: loads plugins or measures anything (it reads rows and result files), fits a
//! law (it copies the fit's files), or depends on `host-sweep`, `host-fit` or the binary.

pub mod rankplot;
pub mod report;
