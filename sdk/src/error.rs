//! The one error type plugins return.

use std::fmt;

/// What went wrong inside a format, in words a user can act on.
///
/// Errors cross the plugin boundary as their `Display` text, so the message
/// must name the parameter or the input involved and say what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A parameter has a bad value (`name`, then what is wrong with it).
    Param {
        /// The parameter's name.
        name: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// A parameter the format does not have.
    UnknownParam {
        /// The key that was given.
        name: String,
        /// The keys the format accepts.
        known: Vec<String>,
    },
    /// The tensor (shape or values) cannot be handled by this format.
    Input(String),
    /// Anything else.
    Other(String),
}

impl Error {
    /// A bad value for parameter `name`.
    pub fn param(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Param { name: name.into(), message: message.into() }
    }
    /// A tensor this format cannot handle.
    pub fn input(message: impl Into<String>) -> Self {
        Error::Input(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Param { name, message } => write!(f, "parameter `{name}`: {message}"),
            Error::UnknownParam { name, known } => {
                if known.is_empty() {
                    write!(f, "unknown parameter `{name}`: this format takes no parameters")
                } else {
                    write!(f, "unknown parameter `{name}` (known: {})", known.join(", "))
                }
            }
            Error::Input(m) | Error::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Short for `std::result::Result<T, sdk::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
