// duet.hpp — header-only C++17 bindings over the C ABI in include/duet.h.
//
//   #include "duet.hpp"            // with -I include -I bindings/cpp, link -lduet
//   duet::Model model("models/flan-t5-small", {{"intra_threads", "2"}});
//   duet::Params params;
//   params.set("max_new_tokens", 32).set("num_beams", 4);
//   duet::Output out = model.generate("summarize: ...", params);
//   std::cout << out.sequences[0].text << "\n";
//
//   duet::Chat chat = model.chat(params);
//   duet::Reply reply = chat.send("Hello!", [](std::string_view piece) { std::cout << piece; });
//
// Conventions
//  * Every failing C call throws duet::Error (a std::runtime_error) carrying the status code,
//    its name and duet's message. Using a moved-from object throws duet::Error with
//    DUET_STATUS_NULL_POINTER; a string holding a NUL byte throws DUET_STATUS_INVALID_ARGUMENT.
//  * Strings go in as std::string_view (copied to NUL-terminated storage before the C call) and
//    come out as std::string (copies; nothing returned refers to duet's memory).
//  * Handles (Model, Params, Chat, Index, Reply, CancelToken, Generator) are move-only RAII owners.
//  * Cancelling: a callback returning Flow::Stop (the result/reply says FinishReason::Cancelled);
//    a CancelToken set on the Params, from any thread, or the `timeout_ms` param (the call throws
//    duet::Error with DUET_STATUS_CANCELLED / DUET_STATUS_DEADLINE_EXCEEDED).
//  * Callbacks are any callables. They return void (go on) or duet::Flow (Flow::Stop cancels
//    the call, as a non-zero return does in C). An exception thrown by a callback never crosses
//    the C ABI: it is caught, the C call is cancelled, and once the C call has returned the very
//    same exception is rethrown to the caller of the C++ method.
//  * Thread safety is the C API's: a Model may be used by many threads at once; a Params may be
//    read concurrently but changed by one thread at a time; a Chat is used by one thread at a time.
#ifndef DUET_HPP
#define DUET_HPP

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <iterator>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "duet.h"

namespace duet {

// ---------------------------------------------------------------------------------------------
// Errors

/// A failed duet call: the status code, its name ("DUET_STATUS_MODEL_INVALID") and the message.
class Error : public std::runtime_error {
public:
    Error(duet_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}

    /// The C status code.
    duet_status status() const noexcept { return status_; }
    /// The status code's name, e.g. "DUET_STATUS_INVALID_PARAM" (static storage).
    const char *status_name() const noexcept { return duet_status_name(static_cast<int32_t>(status_)); }

private:
    duet_status status_;
};

/// What a callback tells the running call: go on, or stop (cancel) it.
enum class Flow { Continue, Stop };

/// Why a sequence or reply ended.
enum class FinishReason {
    Eos = DUET_FINISH_REASON_EOS,
    Length = DUET_FINISH_REASON_LENGTH,
    StopString = DUET_FINISH_REASON_STOP_STRING,
    Cancelled = DUET_FINISH_REASON_CANCELLED,
};

inline const char *to_string(FinishReason reason) noexcept {
    switch (reason) {
    case FinishReason::Eos: return "eos";
    case FinishReason::Length: return "length";
    case FinishReason::StopString: return "stop_string";
    case FinishReason::Cancelled: return "cancelled";
    }
    return "unknown";
}

/// duet's version, "MAJOR.MINOR.PATCH".
inline std::string version() { return duet_version(); }

/// The name of a status code ("DUET_STATUS_UNKNOWN" for numbers that are not codes).
inline std::string status_name(duet_status status) { return duet_status_name(static_cast<int32_t>(status)); }

namespace detail {

/// Throws the error of the last failed call on this thread when `status` is not OK.
inline void check(duet_status status) {
    if (status != DUET_STATUS_OK) {
        const char *message = duet_last_error_message();
        throw Error(status, message ? message : "");
    }
}

[[noreturn]] inline void moved_from(const char *type) {
    throw Error(DUET_STATUS_NULL_POINTER, std::string("duet::") + type + " was moved from");
}

/// A NUL-terminated copy of `s`; a NUL inside `s` (which C would silently cut at) is an error.
inline std::string c_copy(std::string_view s, const char *what) {
    if (s.find('\0') != std::string_view::npos) {
        throw Error(DUET_STATUS_INVALID_ARGUMENT, std::string("`") + what + "` contains a NUL byte");
    }
    return std::string(s);
}

/// NUL-terminated copies of `texts` and an array of pointers to them.
struct CStrings {
    std::vector<std::string> storage;
    std::vector<const char *> pointers;

    CStrings(const std::vector<std::string> &texts, const char *what) {
        storage.reserve(texts.size());
        pointers.reserve(texts.size() + 1);
        for (const auto &t : texts) storage.push_back(c_copy(t, what));
        for (const auto &t : storage) pointers.push_back(t.c_str());
        pointers.push_back(nullptr); // so that data() is never NULL, even for no texts
    }
    std::size_t size() const noexcept { return storage.size(); }
};

/// A JSON string literal for `s` (UTF-8 passed through, controls escaped).
inline std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (c < 0x20) {
                static const char hex[] = "0123456789abcdef";
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 0xf];
            } else {
                out += ch;
            }
        }
    }
    out += '"';
    return out;
}

/// Turns a callable returning void or Flow into one returning Flow.
template <class F, class... Args>
std::function<Flow(Args...)> to_flow(F &&f) {
    using Fn = std::decay_t<F>;
    using R = std::invoke_result_t<Fn &, Args...>;
    static_assert(std::is_same<R, void>::value || std::is_same<R, Flow>::value,
                  "a duet callback must return void or duet::Flow (bool would be ambiguous)");
    if constexpr (std::is_void<R>::value) {
        return [fn = Fn(std::forward<F>(f))](Args... args) mutable {
            fn(args...);
            return Flow::Continue;
        };
    } else {
        return std::function<Flow(Args...)>(Fn(std::forward<F>(f)));
    }
}

/// Callbacks of one C call and the first exception one of them threw.
struct Hooks {
    const std::function<Flow(std::size_t, std::string_view, int32_t)> *on_piece = nullptr;
    const std::function<Flow(std::string_view)> *on_text = nullptr;
    const std::function<Flow(std::size_t, std::size_t, std::size_t)> *on_progress = nullptr;
    std::exception_ptr error;

    // The trampolines never let an exception out: C (and Rust behind it) must not be unwound.
    static int32_t piece(void *user_data, size_t input, const char *piece, size_t len, int32_t token) noexcept {
        auto *h = static_cast<Hooks *>(user_data);
        if (h->error) return 1;
        try {
            const std::string_view text(piece, len);
            Flow flow = Flow::Continue;
            if (h->on_piece) flow = (*h->on_piece)(input, text, token);
            else if (h->on_text) flow = (*h->on_text)(text);
            return flow == Flow::Stop ? 1 : 0;
        } catch (...) {
            h->error = std::current_exception();
            return 1;
        }
    }

    static int32_t progress(void *user_data, size_t done, size_t total, size_t level) noexcept {
        auto *h = static_cast<Hooks *>(user_data);
        if (h->error) return 1;
        try {
            return (*h->on_progress)(done, total, level) == Flow::Stop ? 1 : 0;
        } catch (...) {
            h->error = std::current_exception();
            return 1;
        }
    }

    duet_callbacks c_callbacks() {
        duet_callbacks c{};
        c.on_token = (on_piece || on_text) ? &Hooks::piece : nullptr;
        c.on_progress = on_progress ? &Hooks::progress : nullptr;
        c.user_data = this;
        return c;
    }

    /// After the C call: a callback's exception first (the call was cancelled because of it),
    /// then the call's own status.
    void finish(duet_status status) {
        if (error) std::rethrow_exception(error);
        check(status);
    }
};

/// A move-only owner of a C handle freed by `Free`.
template <class T, void (*Free)(T *)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *p) noexcept : p_(p) {}
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Handle &operator=(Handle &&o) noexcept {
        if (this != &o) {
            reset();
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    ~Handle() { reset(); }
    void reset() noexcept {
        if (p_) Free(p_);
        p_ = nullptr;
    }
    T *get() const noexcept { return p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }

private:
    T *p_ = nullptr;
};

} // namespace detail

// ---------------------------------------------------------------------------------------------
// Callback types: built from any callable returning void or duet::Flow, or from nullptr (none).

/// Streams generate's text: (input index, piece, token id; -1 for a final flush / beam result).
class OnPiece {
public:
    OnPiece() = default;
    OnPiece(std::nullptr_t) {}
    template <class F, std::enable_if_t<!std::is_same<std::decay_t<F>, OnPiece>::value &&
                                            std::is_invocable<std::decay_t<F> &, std::size_t, std::string_view, int32_t>::value,
                                        int> = 0>
    OnPiece(F &&f) : fn_(detail::to_flow<F, std::size_t, std::string_view, int32_t>(std::forward<F>(f))) {}
    explicit operator bool() const noexcept { return static_cast<bool>(fn_); }
    const std::function<Flow(std::size_t, std::string_view, int32_t)> *get() const noexcept { return fn_ ? &fn_ : nullptr; }

private:
    std::function<Flow(std::size_t, std::string_view, int32_t)> fn_;
};

/// Streams the text of a chat, assist or summarize answer: (piece).
class OnText {
public:
    OnText() = default;
    OnText(std::nullptr_t) {}
    template <class F, std::enable_if_t<!std::is_same<std::decay_t<F>, OnText>::value &&
                                            std::is_invocable<std::decay_t<F> &, std::string_view>::value,
                                        int> = 0>
    OnText(F &&f) : fn_(detail::to_flow<F, std::string_view>(std::forward<F>(f))) {}
    explicit operator bool() const noexcept { return static_cast<bool>(fn_); }
    const std::function<Flow(std::string_view)> *get() const noexcept { return fn_ ? &fn_ : nullptr; }

private:
    std::function<Flow(std::string_view)> fn_;
};

/// Hears a long task's progress: (done, total, level).
class OnProgress {
public:
    OnProgress() = default;
    OnProgress(std::nullptr_t) {}
    template <class F, std::enable_if_t<!std::is_same<std::decay_t<F>, OnProgress>::value &&
                                            std::is_invocable<std::decay_t<F> &, std::size_t, std::size_t, std::size_t>::value,
                                        int> = 0>
    OnProgress(F &&f) : fn_(detail::to_flow<F, std::size_t, std::size_t, std::size_t>(std::forward<F>(f))) {}
    explicit operator bool() const noexcept { return static_cast<bool>(fn_); }
    const std::function<Flow(std::size_t, std::size_t, std::size_t)> *get() const noexcept { return fn_ ? &fn_ : nullptr; }

private:
    std::function<Flow(std::size_t, std::size_t, std::size_t)> fn_;
};

// ---------------------------------------------------------------------------------------------
// Runtime

/// Loads libonnxruntime from `ort_library` (empty: the usual search). Optional; later calls do
/// nothing.
inline void runtime_init(std::string_view ort_library = {}) {
    if (ort_library.empty()) {
        detail::check(duet_runtime_init(nullptr));
    } else {
        const std::string path = detail::c_copy(ort_library, "ort_library");
        detail::check(duet_runtime_init(path.c_str()));
    }
}

// ---------------------------------------------------------------------------------------------
// CancelToken

/// A flag that cancels every call whose Params carry it (Params::set_cancel_token), from any
/// thread: such a call ends at its next decoding step with duet::Error DUET_STATUS_CANCELLED.
/// cancel() and reset() are thread-safe; move-only.
class CancelToken {
public:
    CancelToken() {
        duet_cancel_token *t = nullptr;
        detail::check(duet_cancel_token_new(&t));
        h_ = decltype(h_)(t);
    }
    /// Cancels every call watching the token.
    void cancel() const { detail::check(duet_cancel_token_cancel(raw())); }
    /// Makes the token usable again.
    void reset() const { detail::check(duet_cancel_token_reset(raw())); }

    const duet_cancel_token *raw() const {
        if (!h_) detail::moved_from("CancelToken");
        return h_.get();
    }

private:
    detail::Handle<duet_cancel_token, duet_cancel_token_free> h_;
};

// ---------------------------------------------------------------------------------------------
// Params

/// Generation (and task) parameters by Hugging Face name. Setters return *this for chaining.
class Params {
public:
    /// Every key at its default.
    Params() {
        duet_params *p = nullptr;
        detail::check(duet_params_new(&p));
        h_ = Handle(p);
    }

    Params &set(std::string_view key, bool value) {
        const std::string k = detail::c_copy(key, "key");
        detail::check(duet_params_set_bool(raw(), k.c_str(), value));
        return *this;
    }

    /// Any integer type (not bool, which has its own overload).
    template <class T, std::enable_if_t<std::is_integral<T>::value && !std::is_same<T, bool>::value, int> = 0>
    Params &set(std::string_view key, T value) {
        if constexpr (std::is_unsigned<T>::value && sizeof(T) >= sizeof(int64_t)) {
            if (value > static_cast<T>(std::numeric_limits<int64_t>::max())) {
                throw Error(DUET_STATUS_INVALID_PARAM, "`" + std::string(key) + "`: value does not fit in int64");
            }
        }
        const std::string k = detail::c_copy(key, "key");
        detail::check(duet_params_set_int(raw(), k.c_str(), static_cast<int64_t>(value)));
        return *this;
    }

    /// Any floating-point type.
    template <class T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
    Params &set(std::string_view key, T value) {
        const std::string k = detail::c_copy(key, "key");
        detail::check(duet_params_set_float(raw(), k.c_str(), static_cast<double>(value)));
        return *this;
    }

    /// Any key from text: "4", "0.7", "true", "never", "[1,2]", "[\"###\"]", or a string value.
    Params &set(std::string_view key, std::string_view value) {
        const std::string k = detail::c_copy(key, "key");
        const std::string v = detail::c_copy(value, "value");
        detail::check(duet_params_set_string(raw(), k.c_str(), v.c_str()));
        return *this;
    }
    // Without these, a string literal or std::string would pick the bool overload.
    Params &set(std::string_view key, const char *value) {
        if (!value) throw Error(DUET_STATUS_NULL_POINTER, "`" + std::string(key) + "`: the value is a null pointer");
        return set(key, std::string_view(value));
    }
    Params &set(std::string_view key, const std::string &value) { return set(key, std::string_view(value)); }

    /// A list of strings (`stop_strings`), passed as a JSON array.
    Params &set(std::string_view key, const std::vector<std::string> &values) {
        std::string json = "[";
        for (std::size_t i = 0; i < values.size(); i++) {
            if (i) json += ',';
            json += detail::json_string(values[i]);
        }
        json += ']';
        return set(key, std::string_view(json));
    }

    /// A list of token ids (`suppress_tokens`, `eos_token_id`, ...), passed as a JSON array.
    Params &set(std::string_view key, const std::vector<int64_t> &values) {
        std::string json = "[";
        for (std::size_t i = 0; i < values.size(); i++) {
            if (i) json += ',';
            json += std::to_string(values[i]);
        }
        json += ']';
        return set(key, std::string_view(json));
    }

    /// Makes calls with these params watch `token` (the params keep it alive, also after the
    /// CancelToken object is gone).
    Params &set_cancel_token(const CancelToken &token) {
        detail::check(duet_params_set_cancel_token(raw(), token.raw()));
        return *this;
    }
    /// Calls with these params watch no token any more.
    Params &clear_cancel_token() {
        detail::check(duet_params_set_cancel_token(raw(), nullptr));
        return *this;
    }

    /// Returns `key` to its default.
    Params &unset(std::string_view key) {
        const std::string k = detail::c_copy(key, "key");
        detail::check(duet_params_unset(raw(), k.c_str()));
        return *this;
    }

    /// The C handle (owned by this object); throws when moved from.
    duet_params *raw() const {
        if (!h_) detail::moved_from("Params");
        return h_.get();
    }

private:
    using Handle = detail::Handle<duet_params, duet_params_free>;
    Handle h_;
};

namespace detail {
inline const duet_params *raw_or_null(const Params *p) { return p ? p->raw() : nullptr; }
} // namespace detail

// ---------------------------------------------------------------------------------------------
// Results

/// One generated sequence.
struct Sequence {
    std::string text;
    std::vector<int32_t> token_ids;
    double score = 0.0;
    FinishReason finish_reason = FinishReason::Eos;
};

/// The sequences of one input (num_return_sequences of them, best first).
struct Output {
    std::vector<Sequence> sequences;
    std::size_t input_tokens = 0;
    bool truncated = false;
};

/// The answer of summarize, chat or assist.
class Reply {
public:
    explicit Reply(duet_reply *r) noexcept : h_(r) {}

    std::string text() const {
        const char *t = nullptr;
        detail::check(duet_reply_text(raw(), &t));
        return t ? t : "";
    }

    FinishReason finish_reason() const {
        duet_finish_reason r = DUET_FINISH_REASON_EOS;
        detail::check(duet_reply_finish_reason(raw(), &r));
        return static_cast<FinishReason>(r);
    }

    /// A number about the reply: "chunks", "levels", "summaries" (summarize); "dropped_turns",
    /// "prompt_tokens", "input_truncated" (chat, assist).
    int64_t stat(std::string_view key) const {
        const std::string k = detail::c_copy(key, "key");
        int64_t v = 0;
        detail::check(duet_reply_stat(raw(), k.c_str(), &v));
        return v;
    }

    const duet_reply *raw() const {
        if (!h_) detail::moved_from("Reply");
        return h_.get();
    }

private:
    detail::Handle<duet_reply, duet_reply_free> h_;
};

/// One search hit.
struct Hit {
    int64_t id = 0;
    double score = 0.0;
};

namespace detail {

inline std::vector<Output> read_result(const duet_result *r) {
    std::size_t n_inputs = 0;
    check(duet_result_num_inputs(r, &n_inputs));
    std::vector<Output> outputs(n_inputs);
    for (std::size_t i = 0; i < n_inputs; i++) {
        Output &o = outputs[i];
        check(duet_result_input_info(r, i, &o.input_tokens, &o.truncated));
        std::size_t n_seq = 0;
        check(duet_result_num_sequences(r, i, &n_seq));
        o.sequences.resize(n_seq);
        for (std::size_t s = 0; s < n_seq; s++) {
            Sequence &seq = o.sequences[s];
            const char *text = nullptr;
            check(duet_result_text(r, i, s, &text));
            seq.text = text ? text : "";
            const int32_t *ids = nullptr;
            std::size_t len = 0;
            check(duet_result_token_ids(r, i, s, &ids, &len));
            if (ids && len) seq.token_ids.assign(ids, ids + len);
            check(duet_result_score(r, i, s, &seq.score));
            duet_finish_reason reason = DUET_FINISH_REASON_EOS;
            check(duet_result_finish_reason(r, i, s, &reason));
            seq.finish_reason = static_cast<FinishReason>(reason);
        }
    }
    return outputs;
}

} // namespace detail

class Chat;
class Index;

// ---------------------------------------------------------------------------------------------
// Model

/// A loaded model directory (Optimum ONNX export). Thread-safe; move-only.
class Model {
public:
    /// Opens `dir` with model options by name (`providers`, `layout`, `intra_threads`,
    /// `strict_providers`, `ort_library`, ...), each given as text.
    explicit Model(std::string_view dir, const std::map<std::string, std::string> &options = {}) {
        const std::string d = detail::c_copy(dir, "dir");
        detail::Handle<duet_model_options, duet_model_options_free> opts;
        if (!options.empty()) {
            duet_model_options *o = nullptr;
            detail::check(duet_model_options_new(&o));
            opts = decltype(opts)(o);
            for (const auto &kv : options) {
                const std::string k = detail::c_copy(kv.first, "key");
                const std::string v = detail::c_copy(kv.second, "value");
                detail::check(duet_model_options_set_string(opts.get(), k.c_str(), v.c_str()));
            }
        }
        duet_model *m = nullptr;
        detail::check(duet_model_open(d.c_str(), opts.get(), &m));
        h_ = decltype(h_)(m);
    }

    /// What was detected, as a JSON object.
    std::string info_json() const {
        char *s = nullptr;
        detail::check(duet_model_info_json(raw(), &s));
        std::string out = s ? s : "";
        duet_string_free(s);
        return out;
    }

    /// The execution provider, e.g. "CPUExecutionProvider".
    std::string execution_provider() const {
        const char *s = nullptr;
        detail::check(duet_model_execution_provider(raw(), &s));
        return s ? s : "";
    }

    /// Width of embed's vectors.
    std::size_t embedding_dim() const {
        std::size_t d = 0;
        detail::check(duet_model_embedding_dim(raw(), &d));
        return d;
    }

    // -- generate: a batch (one Output per input), or one input ----------------------------------
    // `on_piece(input_index, piece, token_id)` streams text as it is decided (beam search: each
    // input's best sequence once, at the end). A one-element braced list is ambiguous between the
    // two forms: write generate("text") or generate(std::vector<std::string>{"text"}).
    std::vector<Output> generate(const std::vector<std::string> &inputs, const Params &params, OnPiece on_piece = {}) const {
        return generate_impl(inputs, &params, on_piece);
    }
    std::vector<Output> generate(const std::vector<std::string> &inputs, OnPiece on_piece = {}) const {
        return generate_impl(inputs, nullptr, on_piece);
    }
    Output generate(std::string_view input, const Params &params, OnPiece on_piece = {}) const {
        return std::move(generate_impl({std::string(input)}, &params, on_piece).at(0));
    }
    Output generate(std::string_view input, OnPiece on_piece = {}) const {
        return std::move(generate_impl({std::string(input)}, nullptr, on_piece).at(0));
    }

    // -- summarize, assist ----------------------------------------------------------------------
    Reply summarize(std::string_view text, const Params &params, OnProgress on_progress = {}, OnText on_text = {}) const {
        return summarize_impl(text, &params, on_progress, on_text);
    }
    Reply summarize(std::string_view text, OnProgress on_progress = {}, OnText on_text = {}) const {
        return summarize_impl(text, nullptr, on_progress, on_text);
    }
    /// Translates into `to` (from `from`; empty: the model's default source, or none). Codes:
    /// the model's own or ISO 639; info()'s "translation" lists them. The reply's stat "chunks".
    Reply translate(std::string_view text, std::string_view to, std::string_view from, const Params &params,
                    OnProgress on_progress = {}) const {
        return translate_impl(text, to, from, &params, on_progress);
    }
    Reply translate(std::string_view text, std::string_view to, std::string_view from = {}, OnProgress on_progress = {}) const {
        return translate_impl(text, to, from, nullptr, on_progress);
    }
    Reply assist(std::string_view question, const Params &params, OnText on_text = {}) const {
        return assist_impl(question, &params, on_text);
    }
    Reply assist(std::string_view question, OnText on_text = {}) const {
        return assist_impl(question, nullptr, on_text);
    }

    /// A generation driven by hand, event by event (defined below).
    class Generator generator(const std::vector<std::string> &inputs, const Params &params) const;
    class Generator generator(const std::vector<std::string> &inputs) const;

    /// A conversation (defined below).
    Chat chat() const;
    Chat chat(const Params &params) const;

    // -- embed, rerank --------------------------------------------------------------------------
    /// L2-normalized embeddings (encoder mean pooling), one row of embedding_dim() per text.
    std::vector<std::vector<float>> embed(const std::vector<std::string> &texts, const Params &params) const {
        return embed_impl(texts, &params);
    }
    std::vector<std::vector<float>> embed(const std::vector<std::string> &texts) const { return embed_impl(texts, nullptr); }
    std::vector<float> embed(std::string_view text, const Params &params) const {
        return std::move(embed_impl({std::string(text)}, &params).at(0));
    }
    std::vector<float> embed(std::string_view text) const { return std::move(embed_impl({std::string(text)}, nullptr).at(0)); }

    /// One score per passage (higher is more relevant); `rerank_mode` etc. in params.
    std::vector<double> rerank(std::string_view query, const std::vector<std::string> &passages, const Params &params) const {
        return rerank_impl(query, passages, &params);
    }
    std::vector<double> rerank(std::string_view query, const std::vector<std::string> &passages) const {
        return rerank_impl(query, passages, nullptr);
    }

    /// The C handle (owned by this object); throws when moved from.
    const duet_model *raw() const {
        if (!h_) detail::moved_from("Model");
        return h_.get();
    }

private:
    std::vector<std::vector<float>> embed_impl(const std::vector<std::string> &texts, const Params *params) const {
        const duet_model *m = raw();
        const duet_params *p = detail::raw_or_null(params);
        const detail::CStrings in(texts, "texts");
        const std::size_t dim = embedding_dim();
        std::vector<float> flat(dim * texts.size() + 1); // +1: never a NULL/empty buffer
        detail::check(duet_embed(m, in.pointers.data(), in.size(), p, flat.data(), flat.size() - 1));
        std::vector<std::vector<float>> rows(texts.size());
        for (std::size_t i = 0; i < texts.size(); i++) {
            const auto begin = flat.begin() + static_cast<std::ptrdiff_t>(i * dim);
            rows[i].assign(begin, begin + static_cast<std::ptrdiff_t>(dim));
        }
        return rows;
    }

    std::vector<double> rerank_impl(std::string_view query, const std::vector<std::string> &passages, const Params *params) const {
        const duet_model *m = raw();
        const duet_params *p = detail::raw_or_null(params);
        const std::string q = detail::c_copy(query, "query");
        const detail::CStrings in(passages, "passages");
        std::vector<double> scores(passages.size() + 1);
        detail::check(duet_rerank(m, q.c_str(), in.pointers.data(), in.size(), p, scores.data()));
        scores.pop_back();
        return scores;
    }

    std::vector<Output> generate_impl(const std::vector<std::string> &inputs, const Params *params, const OnPiece &on_piece) const {
        const duet_model *m = raw();
        const duet_params *p = detail::raw_or_null(params);
        const detail::CStrings in(inputs, "inputs");
        detail::Hooks hooks;
        hooks.on_piece = on_piece.get();
        duet_result *r = nullptr;
        const duet_status st = duet_generate(m, in.pointers.data(), in.size(), p,
                                             on_piece ? &detail::Hooks::piece : nullptr, &hooks, &r);
        detail::Handle<duet_result, duet_result_free> result(st == DUET_STATUS_OK ? r : nullptr);
        hooks.finish(st);
        return detail::read_result(result.get());
    }

    Reply summarize_impl(std::string_view text, const Params *params, const OnProgress &on_progress, const OnText &on_text) const {
        const duet_model *m = raw();
        const duet_params *p = detail::raw_or_null(params);
        const std::string t = detail::c_copy(text, "text");
        detail::Hooks hooks;
        hooks.on_text = on_text.get();
        hooks.on_progress = on_progress.get();
        const duet_callbacks cb = hooks.c_callbacks();
        duet_reply *r = nullptr;
        const duet_status st = duet_summarize(m, t.c_str(), p, &cb, &r);
        Reply reply(st == DUET_STATUS_OK ? r : nullptr);
        hooks.finish(st);
        return reply;
    }

    Reply translate_impl(std::string_view text, std::string_view to, std::string_view from, const Params *params,
                         const OnProgress &on_progress) const {
        const duet_model *m = raw();
        const duet_params *p = detail::raw_or_null(params);
        const std::string t = detail::c_copy(text, "text");
        const std::string target = detail::c_copy(to, "to");
        const std::string source = detail::c_copy(from, "from");
        detail::Hooks hooks;
        hooks.on_progress = on_progress.get();
        const duet_callbacks cb = hooks.c_callbacks();
        duet_reply *r = nullptr;
        const duet_status st = duet_translate(m, t.c_str(), target.empty() ? nullptr : target.c_str(),
                                              source.empty() ? nullptr : source.c_str(), p, &cb, &r);
        Reply reply(st == DUET_STATUS_OK ? r : nullptr);
        hooks.finish(st);
        return reply;
    }

    Reply assist_impl(std::string_view question, const Params *params, const OnText &on_text) const {
        const duet_model *m = raw();
        const duet_params *p = detail::raw_or_null(params);
        const std::string q = detail::c_copy(question, "question");
        detail::Hooks hooks;
        hooks.on_text = on_text.get();
        const duet_callbacks cb = hooks.c_callbacks();
        duet_reply *r = nullptr;
        const duet_status st = duet_assist(m, q.c_str(), p, &cb, &r);
        Reply reply(st == DUET_STATUS_OK ? r : nullptr);
        hooks.finish(st);
        return reply;
    }

    detail::Handle<duet_model, duet_model_free> h_;
};

// ---------------------------------------------------------------------------------------------
// Chat

/// A conversation. It keeps its model alive; used by one thread at a time; move-only.
class Chat {
public:
    /// Params: generation keys plus `system_prompt`, `chat_template`, `chat_turn_template`.
    explicit Chat(const Model &model) { init(model, nullptr); }
    Chat(const Model &model, const Params &params) { init(model, &params); }

    /// Sends `user_text` and answers it, streaming the answer to `on_text`. A cancelled turn
    /// (Flow::Stop, or an exception from `on_text`, which is then rethrown) is not kept.
    Reply send(std::string_view user_text, OnText on_text = {}) {
        duet_chat *c = raw();
        const std::string t = detail::c_copy(user_text, "user_text");
        detail::Hooks hooks;
        hooks.on_text = on_text.get();
        const duet_callbacks cb = hooks.c_callbacks();
        duet_reply *r = nullptr;
        const duet_status st = duet_chat_send(c, t.c_str(), &cb, &r);
        Reply reply(st == DUET_STATUS_OK ? r : nullptr);
        hooks.finish(st);
        return reply;
    }

    /// Forgets every turn.
    void reset() { detail::check(duet_chat_reset(raw())); }

    /// Number of turns kept.
    std::size_t turns() const {
        std::size_t n = 0;
        detail::check(duet_chat_num_turns(raw(), &n));
        return n;
    }

    duet_chat *raw() const {
        if (!h_) detail::moved_from("Chat");
        return h_.get();
    }

private:
    void init(const Model &model, const Params *params) {
        const duet_model *m = model.raw();
        const duet_params *p = detail::raw_or_null(params);
        duet_chat *c = nullptr;
        detail::check(duet_chat_new(m, p, &c));
        h_ = decltype(h_)(c);
    }

    detail::Handle<duet_chat, duet_chat_free> h_;
};

inline Chat Model::chat() const { return Chat(*this); }
inline Chat Model::chat(const Params &params) const { return Chat(*this, params); }

// ---------------------------------------------------------------------------------------------
// Generator

/// What one step decided: new text of an input, or that an input finished.
struct Event {
    enum class Kind { Text, Finished };
    Kind kind = Kind::Text;
    std::size_t input = 0;
    /// Text events: the new piece (a copy).
    std::string piece;
    /// Text events: the token that completed the piece, -1 for a final flush / beam result.
    int32_t token_id = -1;
    /// Finished events: why.
    FinishReason finish_reason = FinishReason::Length;
};

/// A generation the caller drives (duet_generator_*): `for (const duet::Event &e : gen)` pulls
/// events until the generation ends; `cancel()` (any thread) stops it at its next step and the
/// loop then ends; `result()` has every input's sequences after the loop. Destroying it before
/// the end cancels it. Used by one thread at a time (but for cancel); move-only.
class Generator {
public:
    Generator(const Model &model, const std::vector<std::string> &inputs, const Params *params) {
        const detail::CStrings in(inputs, "inputs");
        duet_generator *g = nullptr;
        detail::check(duet_generator_new(model.raw(), in.pointers.data(), in.size(), detail::raw_or_null(params), &g));
        h_ = decltype(h_)(g);
    }

    /// The next event, or nothing once the generation is over.
    std::optional<Event> next() {
        duet_event ev{};
        detail::check(duet_generator_next(raw(), &ev));
        if (ev.kind == DUET_EVENT_KIND_DONE) return std::nullopt;
        Event out;
        out.input = ev.input_index;
        if (ev.kind == DUET_EVENT_KIND_TEXT) {
            out.piece.assign(ev.piece, ev.piece_len);
            out.token_id = ev.token_id;
        } else {
            out.kind = Event::Kind::Finished;
            out.finish_reason = static_cast<FinishReason>(ev.finish_reason);
        }
        return out;
    }

    /// Stops at the next step boundary; other requests on the model go on. Thread-safe.
    void cancel() const { detail::check(duet_generator_cancel(raw())); }

    /// Every input's sequences, once next() said the generation is over.
    std::vector<Output> result() const {
        duet_result *r = nullptr;
        detail::check(duet_generator_result(raw(), &r));
        detail::Handle<duet_result, duet_result_free> owned(r);
        return detail::read_result(owned.get());
    }

    /// Input iterator over the events (one pass).
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = Event;
        using difference_type = std::ptrdiff_t;
        using pointer = const Event *;
        using reference = const Event &;
        iterator() = default;
        explicit iterator(Generator *g) : g_(g) { ++*this; }
        reference operator*() const { return *current_; }
        pointer operator->() const { return &*current_; }
        iterator &operator++() {
            current_ = g_->next();
            if (!current_) g_ = nullptr;
            return *this;
        }
        bool operator==(const iterator &o) const { return g_ == o.g_; }
        bool operator!=(const iterator &o) const { return g_ != o.g_; }

    private:
        Generator *g_ = nullptr;
        std::optional<Event> current_;
    };
    iterator begin() { return iterator(this); }
    iterator end() { return iterator(); }

    duet_generator *raw() const {
        if (!h_) detail::moved_from("Generator");
        return h_.get();
    }

private:
    detail::Handle<duet_generator, duet_generator_free> h_;
};

inline Generator Model::generator(const std::vector<std::string> &inputs, const Params &params) const {
    return Generator(*this, inputs, &params);
}
inline Generator Model::generator(const std::vector<std::string> &inputs) const { return Generator(*this, inputs, nullptr); }

// ---------------------------------------------------------------------------------------------
// Index

/// An in-memory embedding index. It keeps its model alive; thread-safe; move-only.
class Index {
public:
    /// An empty index; `params` are used for embedding and reranking.
    explicit Index(const Model &model) { init(model, nullptr); }
    Index(const Model &model, const Params &params) { init(model, &params); }

    /// Reads an index written by save() for use with `model`.
    static Index load(const Model &model, std::string_view path) { return load_impl(model, path, nullptr); }
    static Index load(const Model &model, std::string_view path, const Params &params) { return load_impl(model, path, &params); }

    /// Adds `text` under `id` (an id already present is an error).
    void add(int64_t id, std::string_view text) {
        const std::string t = detail::c_copy(text, "text");
        detail::check(duet_index_add(raw(), id, t.c_str()));
    }

    /// Adds `texts` under `ids`, embedded in batches: all of them, or none when any fails.
    void add_many(const std::vector<int64_t> &ids, const std::vector<std::string> &texts) {
        if (ids.size() != texts.size()) throw Error(DUET_STATUS_INVALID_ARGUMENT, "add_many: as many ids as texts are needed");
        std::vector<std::string> copies;
        copies.reserve(texts.size());
        for (const auto &t : texts) copies.push_back(detail::c_copy(t, "texts"));
        std::vector<const char *> ptrs;
        for (const auto &c : copies) ptrs.push_back(c.c_str());
        detail::check(duet_index_add_batch(raw(), ids.data(), ptrs.data(), ptrs.size()));
    }

    /// The stored text of `id` (an absent id is an error).
    std::string text(int64_t id) const {
        char *s = nullptr;
        detail::check(duet_index_text(raw(), id, &s));
        std::string out = s ? s : "";
        duet_string_free(s);
        return out;
    }

    /// Removes `id` (an absent id is an error).
    void remove(int64_t id) { detail::check(duet_index_remove(raw(), id)); }

    std::size_t size() const {
        std::size_t n = 0;
        detail::check(duet_index_len(raw(), &n));
        return n;
    }

    /// The `k` best entries for `query`, best first; with `rerank_top_n > 0` the best
    /// `rerank_top_n` by embedding are rescored by rerank (and the scores are rerank scores).
    std::vector<Hit> search(std::string_view query, std::size_t k, std::size_t rerank_top_n = 0) const {
        const std::string q = detail::c_copy(query, "query");
        std::vector<int64_t> ids(k);
        std::vector<double> scores(k);
        std::size_t found = 0;
        // Never NULL buffers, so that k == 0 is reported as what it is (INVALID_ARGUMENT).
        if (k == 0) {
            ids.resize(1);
            scores.resize(1);
        }
        detail::check(duet_index_search(raw(), q.c_str(), k, rerank_top_n, ids.data(), scores.data(), &found));
        std::vector<Hit> hits(found);
        for (std::size_t i = 0; i < found; i++) hits[i] = Hit{ids[i], scores[i]};
        return hits;
    }

    /// As search, with this call's params over the index's: `search_mode` ("vector", "keyword"
    /// or "hybrid"), `rerank_top_n`, `rrf_k`, `hybrid_candidates`, `timeout_ms`.
    std::vector<Hit> search(std::string_view query, std::size_t k, const Params &params) const {
        const std::string q = detail::c_copy(query, "query");
        std::vector<int64_t> ids(k ? k : 1);
        std::vector<double> scores(k ? k : 1);
        std::size_t found = 0;
        detail::check(duet_index_search_with(raw(), q.c_str(), k, params.raw(), ids.data(), scores.data(), &found));
        std::vector<Hit> hits(found);
        for (std::size_t i = 0; i < found; i++) hits[i] = Hit{ids[i], scores[i]};
        return hits;
    }

    /// Writes the index to one file.
    void save(std::string_view path) const {
        const std::string p = detail::c_copy(path, "path");
        detail::check(duet_index_save(raw(), p.c_str()));
    }

    const duet_index *raw() const {
        if (!h_) detail::moved_from("Index");
        return h_.get();
    }

private:
    Index() = default;

    void init(const Model &model, const Params *params) {
        const duet_model *m = model.raw();
        const duet_params *p = detail::raw_or_null(params);
        duet_index *i = nullptr;
        detail::check(duet_index_new(m, p, &i));
        h_ = decltype(h_)(i);
    }

    static Index load_impl(const Model &model, std::string_view path, const Params *params) {
        const duet_model *m = model.raw();
        const duet_params *p = detail::raw_or_null(params);
        const std::string f = detail::c_copy(path, "path");
        duet_index *i = nullptr;
        detail::check(duet_index_load(m, f.c_str(), p, &i));
        Index index;
        index.h_ = decltype(index.h_)(i);
        return index;
    }

    detail::Handle<duet_index, duet_index_free> h_;
};

} // namespace duet

#endif // DUET_HPP
