//! The plugin entry point: one exported symbol returning a versioned table of every function of
//! the C API, so that a host that `dlopen`s duet checks the ABI before it calls anything.

use std::ffi::{c_char, c_void};

use super::*;

/// Incompatible changes to the table or to any function in it raise this.
pub const DUET_ABI_MAJOR: u32 = 1;
/// Compatible additions (new members at the end of the table) raise this.
pub const DUET_ABI_MINOR: u32 = 4;

/// Every function of duet.h, as pointers. Members are only ever added at the end.
#[rustfmt::skip] // written by tools/gen_plugin_table.py, one member a line
#[repr(C)]
pub struct duet_api_v1 {
    pub abi_major: u32,
    pub abi_minor: u32,
    /// sizeof(duet_api_v1) as built: a newer duet may have a larger table.
    pub struct_size: usize,
    pub string_free: unsafe extern "C" fn(*mut c_char),
    pub version: unsafe extern "C" fn() -> *const c_char,
    pub last_error_message: unsafe extern "C" fn() -> *const c_char,
    pub status_name: unsafe extern "C" fn(i32) -> *const c_char,
    pub runtime_init: unsafe extern "C" fn(*const c_char) -> duet_status,
    pub model_open: unsafe extern "C" fn(*const c_char, *const duet_model_options, *mut *mut duet_model) -> duet_status,
    pub model_free: unsafe extern "C" fn(*mut duet_model),
    pub model_info_json: unsafe extern "C" fn(*const duet_model, *mut *mut c_char) -> duet_status,
    pub model_execution_provider: unsafe extern "C" fn(*const duet_model, *mut *const c_char) -> duet_status,
    pub params_new: unsafe extern "C" fn(*mut *mut duet_params) -> duet_status,
    pub params_free: unsafe extern "C" fn(*mut duet_params),
    pub params_set_int: unsafe extern "C" fn(*mut duet_params, *const c_char, i64) -> duet_status,
    pub params_set_float: unsafe extern "C" fn(*mut duet_params, *const c_char, f64) -> duet_status,
    pub params_set_bool: unsafe extern "C" fn(*mut duet_params, *const c_char, bool) -> duet_status,
    pub params_set_string: unsafe extern "C" fn(*mut duet_params, *const c_char, *const c_char) -> duet_status,
    pub params_unset: unsafe extern "C" fn(*mut duet_params, *const c_char) -> duet_status,
    pub model_options_new: unsafe extern "C" fn(*mut *mut duet_model_options) -> duet_status,
    pub model_options_free: unsafe extern "C" fn(*mut duet_model_options),
    pub model_options_set_int: unsafe extern "C" fn(*mut duet_model_options, *const c_char, i64) -> duet_status,
    pub model_options_set_bool: unsafe extern "C" fn(*mut duet_model_options, *const c_char, bool) -> duet_status,
    pub model_options_set_string: unsafe extern "C" fn(*mut duet_model_options, *const c_char, *const c_char) -> duet_status,
    pub generate: unsafe extern "C" fn(*const duet_model, *const *const c_char, usize, *const duet_params, duet_token_callback, *mut c_void, *mut *mut duet_result) -> duet_status,
    pub result_free: unsafe extern "C" fn(*mut duet_result),
    pub result_num_inputs: unsafe extern "C" fn(*const duet_result, *mut usize) -> duet_status,
    pub result_num_sequences: unsafe extern "C" fn(*const duet_result, usize, *mut usize) -> duet_status,
    pub result_text: unsafe extern "C" fn(*const duet_result, usize, usize, *mut *const c_char) -> duet_status,
    pub result_token_ids: unsafe extern "C" fn(*const duet_result, usize, usize, *mut *const i32, *mut usize) -> duet_status,
    pub result_score: unsafe extern "C" fn(*const duet_result, usize, usize, *mut f64) -> duet_status,
    pub result_finish_reason: unsafe extern "C" fn(*const duet_result, usize, usize, *mut duet_finish_reason) -> duet_status,
    pub result_input_info: unsafe extern "C" fn(*const duet_result, usize, *mut usize, *mut bool) -> duet_status,
    pub result_to_json: unsafe extern "C" fn(*const duet_result, *mut *mut c_char) -> duet_status,
    pub summarize: unsafe extern "C" fn(*const duet_model, *const c_char, *const duet_params, *const duet_callbacks, *mut *mut duet_reply) -> duet_status,
    pub chat_new: unsafe extern "C" fn(*const duet_model, *const duet_params, *mut *mut duet_chat) -> duet_status,
    pub chat_send: unsafe extern "C" fn(*mut duet_chat, *const c_char, *const duet_callbacks, *mut *mut duet_reply) -> duet_status,
    pub chat_reset: unsafe extern "C" fn(*mut duet_chat) -> duet_status,
    pub chat_num_turns: unsafe extern "C" fn(*const duet_chat, *mut usize) -> duet_status,
    pub chat_free: unsafe extern "C" fn(*mut duet_chat),
    pub assist: unsafe extern "C" fn(*const duet_model, *const c_char, *const duet_params, *const duet_callbacks, *mut *mut duet_reply) -> duet_status,
    pub reply_text: unsafe extern "C" fn(*const duet_reply, *mut *const c_char) -> duet_status,
    pub reply_finish_reason: unsafe extern "C" fn(*const duet_reply, *mut duet_finish_reason) -> duet_status,
    pub reply_stat: unsafe extern "C" fn(*const duet_reply, *const c_char, *mut i64) -> duet_status,
    pub reply_free: unsafe extern "C" fn(*mut duet_reply),
    pub model_embedding_dim: unsafe extern "C" fn(*const duet_model, *mut usize) -> duet_status,
    pub embed: unsafe extern "C" fn(*const duet_model, *const *const c_char, usize, *const duet_params, *mut f32, usize) -> duet_status,
    pub rerank: unsafe extern "C" fn(*const duet_model, *const c_char, *const *const c_char, usize, *const duet_params, *mut f64) -> duet_status,
    pub index_new: unsafe extern "C" fn(*const duet_model, *const duet_params, *mut *mut duet_index) -> duet_status,
    pub index_add: unsafe extern "C" fn(*const duet_index, i64, *const c_char) -> duet_status,
    pub index_remove: unsafe extern "C" fn(*const duet_index, i64) -> duet_status,
    pub index_len: unsafe extern "C" fn(*const duet_index, *mut usize) -> duet_status,
    pub index_search: unsafe extern "C" fn(*const duet_index, *const c_char, usize, usize, *mut i64, *mut f64, *mut usize) -> duet_status,
    pub index_save: unsafe extern "C" fn(*const duet_index, *const c_char) -> duet_status,
    pub index_load: unsafe extern "C" fn(*const duet_model, *const c_char, *const duet_params, *mut *mut duet_index) -> duet_status,
    pub index_free: unsafe extern "C" fn(*mut duet_index),
    pub params_set_cancel_token: unsafe extern "C" fn(*mut duet_params, *const duet_cancel_token) -> duet_status,
    pub cancel_token_new: unsafe extern "C" fn(*mut *mut duet_cancel_token) -> duet_status,
    pub cancel_token_cancel: unsafe extern "C" fn(*const duet_cancel_token) -> duet_status,
    pub cancel_token_reset: unsafe extern "C" fn(*const duet_cancel_token) -> duet_status,
    pub cancel_token_free: unsafe extern "C" fn(*mut duet_cancel_token),
    pub embed_with_flags: unsafe extern "C" fn(*const duet_model, *const *const c_char, usize, *const duet_params, *mut f32, usize, *mut bool) -> duet_status,
    pub index_add_batch: unsafe extern "C" fn(*const duet_index, *const i64, *const *const c_char, usize) -> duet_status,
    pub index_text: unsafe extern "C" fn(*const duet_index, i64, *mut *mut c_char) -> duet_status,
    pub index_search_with: unsafe extern "C" fn(*const duet_index, *const c_char, usize, *const duet_params, *mut i64, *mut f64, *mut usize) -> duet_status,
    pub generator_new: unsafe extern "C" fn(*const duet_model, *const *const c_char, usize, *const duet_params, *mut *mut duet_generator) -> duet_status,
    pub generator_next: unsafe extern "C" fn(*mut duet_generator, *mut duet_event) -> duet_status,
    pub generator_cancel: unsafe extern "C" fn(*const duet_generator) -> duet_status,
    pub generator_result: unsafe extern "C" fn(*const duet_generator, *mut *mut duet_result) -> duet_status,
    pub generator_free: unsafe extern "C" fn(*mut duet_generator),
    pub translate: unsafe extern "C" fn(*const duet_model, *const c_char, *const c_char, *const c_char, *const duet_params, *const duet_callbacks, *mut *mut duet_reply) -> duet_status,
    pub generate_with: unsafe extern "C" fn(*const duet_model, *const *const c_char, usize, *const duet_params, *const duet_callbacks, *mut *mut duet_result) -> duet_status,
}

#[rustfmt::skip]
static PLUGIN_V1: duet_api_v1 = duet_api_v1 {
    abi_major: DUET_ABI_MAJOR,
    abi_minor: DUET_ABI_MINOR,
    struct_size: std::mem::size_of::<duet_api_v1>(),
    string_free: duet_string_free,
    version: duet_version,
    last_error_message: duet_last_error_message,
    status_name: duet_status_name,
    runtime_init: duet_runtime_init,
    model_open: duet_model_open,
    model_free: duet_model_free,
    model_info_json: duet_model_info_json,
    model_execution_provider: duet_model_execution_provider,
    params_new: duet_params_new,
    params_free: duet_params_free,
    params_set_int: duet_params_set_int,
    params_set_float: duet_params_set_float,
    params_set_bool: duet_params_set_bool,
    params_set_string: duet_params_set_string,
    params_unset: duet_params_unset,
    model_options_new: duet_model_options_new,
    model_options_free: duet_model_options_free,
    model_options_set_int: duet_model_options_set_int,
    model_options_set_bool: duet_model_options_set_bool,
    model_options_set_string: duet_model_options_set_string,
    generate: duet_generate,
    result_free: duet_result_free,
    result_num_inputs: duet_result_num_inputs,
    result_num_sequences: duet_result_num_sequences,
    result_text: duet_result_text,
    result_token_ids: duet_result_token_ids,
    result_score: duet_result_score,
    result_finish_reason: duet_result_finish_reason,
    result_input_info: duet_result_input_info,
    result_to_json: duet_result_to_json,
    summarize: duet_summarize,
    chat_new: duet_chat_new,
    chat_send: duet_chat_send,
    chat_reset: duet_chat_reset,
    chat_num_turns: duet_chat_num_turns,
    chat_free: duet_chat_free,
    assist: duet_assist,
    reply_text: duet_reply_text,
    reply_finish_reason: duet_reply_finish_reason,
    reply_stat: duet_reply_stat,
    reply_free: duet_reply_free,
    model_embedding_dim: duet_model_embedding_dim,
    embed: duet_embed,
    rerank: duet_rerank,
    index_new: duet_index_new,
    index_add: duet_index_add,
    index_remove: duet_index_remove,
    index_len: duet_index_len,
    index_search: duet_index_search,
    index_save: duet_index_save,
    index_load: duet_index_load,
    index_free: duet_index_free,
    params_set_cancel_token: duet_params_set_cancel_token,
    cancel_token_new: duet_cancel_token_new,
    cancel_token_cancel: duet_cancel_token_cancel,
    cancel_token_reset: duet_cancel_token_reset,
    cancel_token_free: duet_cancel_token_free,
    embed_with_flags: duet_embed_with_flags,
    index_add_batch: duet_index_add_batch,
    index_text: duet_index_text,
    index_search_with: duet_index_search_with,
    generator_new: duet_generator_new,
    generator_next: duet_generator_next,
    generator_cancel: duet_generator_cancel,
    generator_result: duet_generator_result,
    generator_free: duet_generator_free,
    translate: duet_translate,
    generate_with: duet_generate_with,
};

/// The function table for a host built against ABI major `host_abi_major` (pass
/// DUET_ABI_MAJOR). Another major gets NULL, and `*error` (when not NULL) points to a static
/// message saying why. Safe to call before anything else, from any thread.
#[no_mangle]
pub unsafe extern "C" fn duet_plugin_v1(host_abi_major: u32, error: *mut *const c_char) -> *const duet_api_v1 {
    if host_abi_major != DUET_ABI_MAJOR {
        if !error.is_null() {
            *error = c"duet: the host was built for another ABI major version than this libduet (DUET_ABI_MAJOR 1)".as_ptr();
        }
        return std::ptr::null();
    }
    &PLUGIN_V1
}
