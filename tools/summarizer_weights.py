"""The bundled summarizer's weights as a BART checkpoint, with numpy only.

The summarizer is BART-shaped: its encoder *is* all-MiniLM-L6-v2 (the same weights as the bundled
embedder, frozen during training), its decoder was trained here (tools/train_summarizer.py). BERT and
BART layers correspond one to one (both post-LayerNorm, exact GELU, q·k/sqrt(d) attention, learned
absolute positions); the differences are folded in:
  - BART's learned positions are offset by 2 rows (BartLearnedPositionalEmbedding): rows 2..513 hold
    BERT's 512 positions, rows 0-1 are unused (zeros);
  - BERT adds token type 0's embedding to every token; BART has no token types, so it is added to each
    encoder position row instead (the word embeddings are shared with the decoder and stay untouched);
  - LayerNorm epsilon: BERT 1e-12, BART's nn.LayerNorm 1e-5, and BartConfig has no setting for it. At
    1e-5 the pooled embeddings move by up to 2e-4 from sentence-transformers' (measured); at 1e-12,
    2e-7. So training runs the encoder at ENCODER_LAYER_NORM_EPS and the exported encoder graph has it
    (tools/pack_summarizer.py sets it); a transformers BartForConditionalGeneration loaded from the
    checkpoint runs its encoder at 1e-5 (set_encoder_eps fixes that in PyTorch).

    bert_to_bart_encoder(bert)          {BART name: array} for model.shared + model.encoder.*
    decoder_init_from_bert(bert, n)     a warm start for an n-layer decoder (Rothe et al. 2020): BERT
                                        layer i's self-attention and feed-forward for decoder layer i;
                                        cross-attention is left to the caller (fresh)
"""
import numpy as np

BART_POSITION_OFFSET = 2
ENCODER_LAYER_NORM_EPS = 1e-12


def set_encoder_eps(model):
    """Run a transformers BART model's encoder LayerNorms at BERT's epsilon."""
    import torch

    for m in model.model.encoder.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = ENCODER_LAYER_NORM_EPS


def _positions(bert, with_token_type):
    pos = bert["embeddings.position_embeddings.weight"]
    if with_token_type:
        pos = pos + bert["embeddings.token_type_embeddings.weight"][0][None, :]
    out = np.zeros((pos.shape[0] + BART_POSITION_OFFSET, pos.shape[1]), dtype=np.float32)
    out[BART_POSITION_OFFSET:] = pos
    return out


def _layer(bert, i, prefix):
    b = f"encoder.layer.{i}."
    pairs = {
        "self_attn.q_proj": "attention.self.query",
        "self_attn.k_proj": "attention.self.key",
        "self_attn.v_proj": "attention.self.value",
        "self_attn.out_proj": "attention.output.dense",
        "self_attn_layer_norm": "attention.output.LayerNorm",
        "fc1": "intermediate.dense",
        "fc2": "output.dense",
        "final_layer_norm": "output.LayerNorm",
    }
    out = {}
    for bart, src in pairs.items():
        out[f"{prefix}{bart}.weight"] = bert[f"{b}{src}.weight"]
        out[f"{prefix}{bart}.bias"] = bert[f"{b}{src}.bias"]
    return out


def bert_layers(bert):
    n = 0
    while f"encoder.layer.{n}.output.dense.weight" in bert:
        n += 1
    return n


def bert_to_bart_encoder(bert):
    out = {
        "model.shared.weight": bert["embeddings.word_embeddings.weight"],
        "model.encoder.embed_positions.weight": _positions(bert, with_token_type=True),
        "model.encoder.layernorm_embedding.weight": bert["embeddings.LayerNorm.weight"],
        "model.encoder.layernorm_embedding.bias": bert["embeddings.LayerNorm.bias"],
    }
    for i in range(bert_layers(bert)):
        out.update(_layer(bert, i, f"model.encoder.layers.{i}."))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def decoder_init_from_bert(bert, layers):
    out = {
        "model.decoder.embed_positions.weight": _positions(bert, with_token_type=True),
        "model.decoder.layernorm_embedding.weight": bert["embeddings.LayerNorm.weight"],
        "model.decoder.layernorm_embedding.bias": bert["embeddings.LayerNorm.bias"],
    }
    for i in range(layers):
        out.update(_layer(bert, i, f"model.decoder.layers.{i}."))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def bart_config(bert_config, decoder_layers):
    """config.json of the BART checkpoint (transformers' BartConfig fields)."""
    h = bert_config["hidden_size"]
    return {
        "model_type": "bart",
        "architectures": ["BartForConditionalGeneration"],
        "vocab_size": bert_config["vocab_size"],
        "d_model": h,
        "encoder_layers": bert_config["num_hidden_layers"],
        "decoder_layers": decoder_layers,
        "encoder_attention_heads": bert_config["num_attention_heads"],
        "decoder_attention_heads": bert_config["num_attention_heads"],
        "encoder_ffn_dim": bert_config["intermediate_size"],
        "decoder_ffn_dim": bert_config["intermediate_size"],
        "activation_function": "gelu",
        "max_position_embeddings": bert_config["max_position_embeddings"],
        "scale_embedding": False,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "init_std": bert_config.get("initializer_range", 0.02),
        "pad_token_id": 0,
        "bos_token_id": 101,
        "eos_token_id": 102,
        "decoder_start_token_id": 101,
        "forced_bos_token_id": None,
        "forced_eos_token_id": None,
        "tie_word_embeddings": True,
        "is_encoder_decoder": True,
        "use_cache": True,
        # read by CTranslate2's BART converter (fairseq-era keys that real BART configs still carry)
        "normalize_before": False,
        "add_final_layer_norm": False,
        # Trained on bare descriptions: duet's likelihood reranking scores log p(query | passage) on the
        # passage alone (src/model/config.rs reads this; the generic default is a question-writing prompt).
        "task_specific_params": {"rerank": {"template": "{passage}"}},
    }


GENERATION_CONFIG = {
    "decoder_start_token_id": 101,
    "bos_token_id": 101,
    "eos_token_id": 102,
    "pad_token_id": 0,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "max_length": 48,
    "num_beams": 4,
    "no_repeat_ngram_size": 3,
}
