//! What every libtorch caller shares: the result type of tch's fallible calls
//! and the one place that turns a libtorch error into a line a user can act on.

pub type TchResult<T> = Result<T, tch::TchError>;

/// libtorch's messages carry a C++ backtrace; keep the first line, and say what
/// to do about running out of memory.
pub fn torch_message(e: &tch::TchError) -> String {
    first_line_with_advice(&e.to_string())
}

/// The first line of a libtorch message (an error, or a panic carrying one),
/// with what to lower when it is an out-of-memory.
pub fn first_line_with_advice(text: &str) -> String {
    let first = text.lines().next().unwrap_or("").trim().to_string();
    if first.to_lowercase().contains("out of memory") {
        format!("{first} — out of memory: lower per_device_train_batch_size or max_length, enable gradient_checkpointing, or load the model in 4-bit")
    } else {
        first
    }
}
