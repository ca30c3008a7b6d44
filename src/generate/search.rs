//! What every search strategy is to the engine: the rows it decodes, the tokens it feeds next,
//! and what it does with one step's logits. The decoder run itself is not the strategy's: a
//! [`super::Generation`] runs it for one request, the scheduler for many requests at once.

use super::output::{FinishReason, Sequence};
use super::params::GenerationParams;
use super::processors::Pipeline;
use crate::error::Result;
use crate::model::Logits;
use crate::text::{StopMatcher, Tokenizer};

/// One thing a step decided, for input `input` of the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text. Greedy/sampling: each new piece as it is decided (whole UTF-8 characters, never
    /// part of a stop string), `token` the id that completed it (`None` for the final flush).
    /// Beam search: the input's best sequence, once, when it is final.
    Text { input: usize, piece: String, token: Option<u32> },
    /// The input's generation ended (greedy/sampling: at once; beam search: when the request ends).
    Finished { input: usize, reason: FinishReason },
}

/// How a step changed the request's rows, for its encoder output and KV cache.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowChange {
    Same,
    /// Row `i` continues row `index[i]` of the same input: only the self-attention cache moves.
    Reorder(Vec<usize>),
    /// Only rows `index` go on (finished rows leave): encoder rows and both caches follow.
    Select(Vec<usize>),
    /// Nothing goes on.
    Done,
}

/// The per-request settings every strategy applies.
pub(crate) struct Rules {
    pub params: GenerationParams,
    pub pipeline: Pipeline,
    pub stops: StopMatcher,
    /// Bytes of text the decoder prefix writes, once decoded (stop strings only).
    prefix_text_len: std::sync::OnceLock<usize>,
}

impl Rules {
    pub fn new(params: &GenerationParams) -> Self {
        Self {
            params: params.clone(),
            pipeline: Pipeline::new(params),
            stops: StopMatcher::new(&params.stop_strings),
            prefix_text_len: Default::default(),
        }
    }

    /// Text of a finished sequence, cut before a stop string, and whether one cut it.
    pub fn final_text(&self, tokenizer: &Tokenizer, token_ids: &[u32]) -> Result<(String, bool)> {
        let text = tokenizer.decode(token_ids)?;
        Ok(match self.stops.find_ending_after(&text, self.prefix_text_len(tokenizer)?) {
            Some(at) => (text[..at].to_string(), true),
            None => (text, false),
        })
    }

    /// Bytes of text the decoder prefix writes (a stop string must end after them).
    pub fn prefix_text_len(&self, tokenizer: &Tokenizer) -> Result<usize> {
        if self.stops.is_empty() || self.params.decoder_prefix.is_empty() {
            return Ok(0);
        }
        if let Some(&len) = self.prefix_text_len.get() {
            return Ok(len);
        }
        let len = tokenizer.decode(&self.params.decoder_prefix)?.len();
        Ok(*self.prefix_text_len.get_or_init(|| len))
    }
}

pub(crate) trait Search: Send {
    /// Which encoder row each decoder row reads, by input index (`None`: one row per input).
    fn encoder_rows(&self) -> Option<Vec<usize>>;

    /// The token each row feeds to the decoder next, in row order.
    fn next_tokens(&self) -> Vec<u32>;

    /// Takes this step's logits (rows `first..first + next_tokens().len()` of `logits`), which
    /// it may overwrite: processors work on them in place, with no vocabulary-sized copy.
    fn advance(&mut self, tokenizer: &Tokenizer, logits: &mut Logits, first: usize, events: &mut Vec<Event>) -> Result<RowChange>;

    /// The sequences of every input, after `advance` said `Done` or when the request is cancelled.
    fn finish(self: Box<Self>, tokenizer: &Tokenizer, cancelled: bool, events: &mut Vec<Event>) -> Result<Vec<Vec<Sequence>>>;
}

/// The strategy `params` ask for, over `inputs` inputs.
pub(crate) fn new_search(params: &GenerationParams, inputs: usize, vocab: usize) -> Box<dyn Search> {
    let rules = Rules::new(params);
    if params.num_beams > 1 {
        Box::new(super::beam::BeamSearch::new(rules, inputs, vocab))
    } else {
        Box::new(super::greedy::Greedy::new(rules, inputs))
    }
}
