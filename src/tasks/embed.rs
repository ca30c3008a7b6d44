//! Sentence embeddings from the encoder: attention-mask weighted mean of the last hidden state,
//! L2-normalized. Inputs are batched in length order so padding costs little.

use crate::error::Result;
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::nonblank;

/// Width of the vectors `embed` returns (the encoder's hidden size).
pub fn embedding_dim(model: &Model) -> Result<usize> {
    let probe = model.encoder.run(&[vec![0]], 0)?;
    Ok(probe.hidden_states()?.1)
}

pub fn embed(model: &Model, texts: &[&str], params: &Settings) -> Result<Vec<Vec<f32>>> {
    let limit = params.int("max_input_tokens").map(|v| v as usize).or(model.config.max_input_tokens);
    let truncate = params.bool("truncate_input").unwrap_or(false);
    let batch = params.int("batch_size").map_or(8, |v| v as usize);
    let pad = model.config.generation.int("pad_token_id").unwrap_or(0) as u32;
    let encoded = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            nonblank(t, &format!("text {i}"))?;
            Ok(model.tokenizer.encode(t, limit, truncate, i)?.ids)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| encoded[i].len());
    let mut out = vec![Vec::new(); texts.len()];
    for group in order.chunks(batch) {
        let inputs: Vec<Vec<u32>> = group.iter().map(|&i| encoded[i].clone()).collect();
        let enc = model.encoder.run(&inputs, pad)?;
        let (hidden, width) = enc.hidden_states()?;
        let mask = enc.mask()?;
        for (row, &i) in group.iter().enumerate() {
            let mut v = vec![0f64; width];
            let mut count = 0f64;
            for pos in 0..enc.len {
                if mask[row * enc.len + pos] == 0 {
                    continue;
                }
                count += 1.0;
                let base = (row * enc.len + pos) * width;
                v.iter_mut().zip(&hidden[base..base + width]).for_each(|(a, &h)| *a += h as f64);
            }
            let norm = v.iter().map(|x| (x / count).powi(2)).sum::<f64>().sqrt().max(1e-12);
            out[i] = v.iter().map(|x| (x / count / norm) as f32).collect();
        }
    }
    Ok(out)
}
