//! cryptolake-scheduler knows processes and time: the Ballista scheduler and executor processes
//! built with cryptolake's codecs, job submission with run history, and EventBridge schedule
//! expressions.
//!
//! Nothing is here yet: jobs run in-process through the CLI (`cryptolake run`). The crate is in
//! the workspace so the layout, dependency direction (scheduler -> jobs -> catalog) and CI are
//! in place for the distributed-execution and scheduling work.
