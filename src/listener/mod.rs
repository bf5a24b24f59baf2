//! Between `accept()` and actix-http: TLS, and the caps and deadlines every plain
//! HTTP connection runs under (`guard`). Knows no route: the wiring puts it in front
//! of the HTTP service, and an upgraded socket leaves it for `crate::transport`.

mod guard;
pub mod tls;

pub use guard::{refuse, wait_until_writable, GuardedIo, HttpCounters, HttpGuard, WriteGate};
