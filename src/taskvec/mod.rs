//! Task vectors: specification, extraction, patching, the fast layer sweep, the accuracy
//! protocol, logit lens, similarity and the JSON sharing format.

pub mod engine;
pub mod format;
pub mod lens;
pub mod protocol;
pub mod task;

pub use engine::{Answer, ApplyReport, Engine, LayerPrediction, TaskVector};
pub use format::VectorFile;
pub use protocol::{Spec, SweepReport, evaluate};
pub use task::{Example, Input, Prompt, Task};
