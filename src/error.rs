//! Error types: one enum, one variant family per layer of the library, each message saying what
//! was wrong and what to do.

use thiserror::Error;

/// Every failure the library reports. Messages are meant for end users.
#[derive(Debug, Error)]
pub enum Error {
    /// A model or weight file could not be read or parsed.
    #[error("cannot load model: {0}")]
    Load(String),
    /// The file is a valid container but not a model this program runs.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// A tensor the architecture needs is missing or has the wrong shape.
    #[error("bad weights: {0}")]
    Weights(String),
    /// Text could not be tokenized, or a prompt does not fit.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// An image could not be decoded or is not acceptable.
    #[error("image: {0}")]
    Image(String),
    /// The forward pass was asked something impossible (bad layer, position, length).
    #[error("model: {0}")]
    Model(String),
    /// A task specification or task vector is not acceptable.
    #[error("task vector: {0}")]
    TaskVector(String),
    /// The compute backend failed (device lost, readback failed).
    #[error("backend: {0}")]
    Backend(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand constructors used across the crate.
impl Error {
    /// A loading error with a formatted message.
    pub fn load(msg: impl Into<String>) -> Self {
        Error::Load(msg.into())
    }
    /// A weights error with a formatted message.
    pub fn weights(msg: impl Into<String>) -> Self {
        Error::Weights(msg.into())
    }
    /// A model (forward pass) error with a formatted message.
    pub fn model(msg: impl Into<String>) -> Self {
        Error::Model(msg.into())
    }
    /// The message without the variant's prefix (for wrapping in another message).
    pub fn message(&self) -> String {
        match self {
            Error::Load(m)
            | Error::Unsupported(m)
            | Error::Weights(m)
            | Error::Tokenize(m)
            | Error::Image(m)
            | Error::Model(m)
            | Error::TaskVector(m)
            | Error::Backend(m) => m.clone(),
            other => other.to_string(),
        }
    }
}
