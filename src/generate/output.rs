//! What a generation returns, and how a caller watches it happen.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token was generated.
    Eos,
    /// `max_new_tokens` was reached.
    Length,
    /// The text reached one of `stop_strings`.
    StopString,
    /// The observer asked to stop.
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Length => "length",
            FinishReason::StopString => "stop_string",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Generated ids, without the decoder start token, up to and including EOS.
    pub token_ids: Vec<u32>,
    /// Decoded text without special tokens; cut before the stop string when one ended it.
    pub text: String,
    /// Beam search: the length-penalized sum of log-probabilities (`sequences_scores`).
    /// Greedy and sampling: the sum of the chosen tokens' log-probabilities after processing.
    pub score: f32,
    /// Per-token log-probabilities after processing.
    pub token_scores: Vec<f32>,
    pub finish_reason: FinishReason,
}

/// The result for one input.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOutput {
    pub sequences: Vec<Sequence>,
    pub input_tokens: usize,
    /// The input was longer than `max_input_tokens` and was cut (only with `truncate_input`).
    pub input_truncated: bool,
}

impl GenerationOutput {
    pub fn finish_reason(&self) -> FinishReason {
        self.sequences.first().map_or(FinishReason::Length, |s| s.finish_reason)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Watches a generation. Greedy and sampling report each new piece of text as it is decided
/// (always whole UTF-8 characters, never part of a stop string); beam search reports each
/// input's best sequence when it is final. Returning `Flow::Stop` cancels the whole call.
pub trait Observer {
    fn on_text(&mut self, input: usize, piece: &str, token_id: Option<u32>) -> Flow;

    /// Asked once per decoding step.
    fn on_step(&mut self) -> Flow {
        Flow::Continue
    }
}

impl<F: FnMut(usize, &str, Option<u32>) -> Flow> Observer for F {
    fn on_text(&mut self, input: usize, piece: &str, token_id: Option<u32>) -> Flow {
        self(input, piece, token_id)
    }
}

/// An observer that watches nothing.
pub(crate) struct Silent;

impl Observer for Silent {
    fn on_text(&mut self, _: usize, _: &str, _: Option<u32>) -> Flow {
        Flow::Continue
    }
}
