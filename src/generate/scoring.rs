//! Teacher forcing: the decoder's next-token logits along a given target sequence. The basis of
//! scoring and reranking, and how tests check what sampling chose against what it could choose.

use crate::error::{Error, Result};
use crate::model::{KvCache, Model};

/// Raw logits before each target token: `targets.len()` rows of `vocab` scores, the first one
/// predicting `targets[0]` from the decoder start token.
pub fn teacher_forced_logits(model: &Model, input_ids: &[u32], targets: &[u32], decoder_start: u32) -> Result<Vec<Vec<f32>>> {
    if input_ids.is_empty() {
        return Err(Error::InvalidArgument("empty input".into()));
    }
    let encoder = model.encoder.run(&[input_ids.to_vec()], 0)?;
    let mut cache = KvCache::default();
    let mut rows = Vec::with_capacity(targets.len());
    let mut previous = decoder_start;
    for &target in targets {
        let logits = model.decoder()?.step(&[previous], &encoder, &mut cache)?;
        rows.push(logits.row(0).to_vec());
        previous = target;
    }
    Ok(rows)
}
