//! Task vectors: specification, extraction, patching, the fast layer sweep, the accuracy
//! protocol, logit lens, similarity and the JSON sharing format.

pub mod arith;
pub mod dataset;
pub mod engine;
pub mod evaluate;
pub mod export;
pub mod extract;
pub mod format;
pub mod lens;
pub mod protocol;
pub mod rows;
pub mod steer;
pub mod table;
pub mod task;
pub mod vector;

pub use dataset::{Item, Modality, PairedTask};
pub use engine::{Answer, ApplyReport, Engine, LayerPrediction, Prefix, ReadAt, TaskVector};
pub use format::VectorFile;
pub use protocol::{Extraction, Spec, SweepReport, evaluate};
pub use steer::Steering;
pub use table::{Row, Table, TableRequest, run_table};
pub use task::{Example, Input, Prompt, Task};
