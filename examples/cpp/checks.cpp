// Checks the C++ bindings (bindings/cpp/duet.hpp) on a model directory:
//   checks MODEL_DIR INDEX_FILE
// Every misuse is a duet::Error with the right status, moved-from objects throw, callbacks'
// exceptions come back to the caller as themselves, streaming adds up to the final text.
// Prints "N passed, M failed" and exits non-zero on any failure.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <type_traits>

#include "duet.hpp"

// Move-only RAII handles.
static_assert(!std::is_copy_constructible<duet::Model>::value, "Model is move-only");
static_assert(!std::is_copy_assignable<duet::Model>::value, "Model is move-only");
static_assert(std::is_nothrow_move_constructible<duet::Model>::value, "Model moves");
static_assert(!std::is_copy_constructible<duet::Params>::value, "Params is move-only");
static_assert(std::is_nothrow_move_assignable<duet::Params>::value, "Params moves");
static_assert(!std::is_copy_constructible<duet::Chat>::value, "Chat is move-only");
static_assert(!std::is_copy_constructible<duet::Index>::value, "Index is move-only");
static_assert(!std::is_copy_constructible<duet::Reply>::value, "Reply is move-only");
static_assert(!std::is_copy_constructible<duet::CancelToken>::value, "CancelToken is move-only");
static_assert(std::is_base_of<std::runtime_error, duet::Error>::value, "Error is a runtime_error");

namespace {

int passed = 0, failed = 0;

void expect(bool ok, const std::string &what) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::cout << "FAIL: " << what << "\n";
    }
}

// Runs f, which must throw duet::Error with `want`.
template <class F>
void expect_error(const char *what, duet_status want, F &&f) {
    try {
        f();
        expect(false, std::string(what) + ": no exception, expected " + duet::status_name(want));
    } catch (const duet::Error &e) {
        expect(e.status() == want, std::string(what) + ": got " + e.status_name() + " (" + e.what() +
                                       "), expected " + duet::status_name(want));
        expect(std::string(e.status_name()) == duet::status_name(e.status()), std::string(what) + ": status name");
    } catch (const std::exception &e) {
        expect(false, std::string(what) + ": threw another exception: " + e.what());
    }
}

struct Boom : std::exception {
    int code;
    explicit Boom(int c) : code(c) {}
    const char *what() const noexcept override { return "boom"; }
};

// Runs f, which must let the Boom thrown by a callback out, unchanged.
template <class F>
void expect_boom(const char *what, int code, F &&f) {
    try {
        f();
        expect(false, std::string(what) + ": the callback's exception did not come back");
    } catch (const Boom &b) {
        expect(b.code == code, std::string(what) + ": the Boom came back with another code");
    } catch (const std::exception &e) {
        expect(false, std::string(what) + ": the callback's exception came back as: " + e.what());
    }
}

} // namespace

/* The embedding model kind through the wrapper: vectors, an index with hybrid search, and
   generation refused with DUET_STATUS_UNSUPPORTED. */
int embedder_checks(const std::string &dir) {
    duet::Model m(dir);
    expect(m.embedding_dim() == 384, "the embedder's width");
    const auto v = m.embed("a terminal text editor");
    double norm = 0;
    for (float x : v) norm += static_cast<double>(x) * x;
    expect(v.size() == 384 && std::fabs(norm - 1.0) < 1e-4, "a unit vector");
    expect_error("generate on an embedding model", DUET_STATUS_UNSUPPORTED, [&] { m.generate("hi"); });
    duet::Index index(m);
    index.add_many({1, 2, 3}, {"ncdu: a disk usage viewer with an ncurses interface", "tcpdump: dumps network traffic",
                               "pandoc: converts documents between markup formats"});
    const auto hits = index.search("which folders use the most disk space", 1, duet::Params().set("search_mode", "hybrid"));
    expect(hits.size() == 1 && hits[0].id == 1, "hybrid search finds the disk usage viewer");
    expect(index.text(3).rfind("pandoc:", 0) == 0, "text() of an entry");
    std::cout << passed << " passed, " << failed << " failed\n";
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && std::string(argv[1]) == "--embedder") return embedder_checks(argv[2]);
    if (argc != 3) {
        std::cerr << "usage: " << argv[0] << " MODEL_DIR INDEX_FILE | --embedder EMBEDDING_MODEL_DIR\n";
        return 2;
    }
    const std::string dir = argv[1], index_file = argv[2];
    expect(!duet::version().empty(), "version");
    expect(duet::status_name(DUET_STATUS_MODEL_INVALID) == "DUET_STATUS_MODEL_INVALID", "status_name");

    // -- errors carry status and message -------------------------------------------------------
    expect_error("missing model dir", DUET_STATUS_MODEL_FILE_MISSING, [] { duet::Model m("/nonexistent/model"); });
    expect_error("unknown model option", DUET_STATUS_UNKNOWN_PARAM, [&] { duet::Model m(dir, {{"no_such_option", "1"}}); });
    expect_error("bad layout option", DUET_STATUS_INVALID_PARAM, [&] { duet::Model m(dir, {{"layout", "diagonal"}}); });
    expect_error("strict unavailable provider", DUET_STATUS_PROVIDER_UNAVAILABLE,
                 [&] { duet::Model m(dir, {{"providers", "cuda,cpu"}, {"strict_providers", "true"}}); });
    expect_error("NUL inside a string_view", DUET_STATUS_INVALID_ARGUMENT,
                 [&] { duet::Model m(std::string_view("tests\0/x", 8)); });
    try {
        duet::Model m("/nonexistent/model");
    } catch (const duet::Error &e) {
        expect(std::string(e.what()).find("/nonexistent/model") != std::string::npos,
               std::string("the message names the directory: ") + e.what());
    }

    duet::Model model(dir, {{"layout", "split"}, {"intra_threads", "1"}});
    expect(model.execution_provider() == "CPUExecutionProvider", "provider: " + model.execution_provider());
    expect(model.info_json().find("\"split\"") != std::string::npos, "info_json: " + model.info_json());

    // -- params: overloads pick the right C setter --------------------------------------------
    duet::Params params;
    params.set("max_new_tokens", 8)          // int
        .set("num_beams", std::size_t{1})    // unsigned
        .set("length_penalty", 1.0)          // double
        .set("repetition_penalty", 1.0f)     // float
        .set("do_sample", false)             // bool
        .set("early_stopping", "never")      // string literal (not bool!)
        .set("early_stopping", std::string("true"))
        .set("stop_strings", std::vector<std::string>{"###", "quote\" back\\slash\nnew line"})
        .set("suppress_tokens", std::vector<int64_t>{5, 6})
        .unset("suppress_tokens");
    expect_error("unknown key", DUET_STATUS_UNKNOWN_PARAM, [&] { params.set("no_such_key", 1); });
    expect_error("bad value", DUET_STATUS_INVALID_PARAM, [&] { params.set("num_beams", 0); });
    expect_error("bad text value", DUET_STATUS_INVALID_PARAM, [&] { params.set("early_stopping", "sometimes"); });
    expect_error("huge unsigned", DUET_STATUS_INVALID_PARAM, [&] { params.set("max_new_tokens", ~0ull); });
    expect_error("invalid UTF-8", DUET_STATUS_INVALID_UTF8, [&] { params.set("system_prompt", "\xff\xfe"); });
    try {
        params.set("no_such_key", 1);
    } catch (const duet::Error &e) {
        expect(std::string(e.what()).find("max_new_tokens") != std::string::npos, "unknown key message lists keys");
    }

    // -- generate: batch, streaming, cancel, exceptions ---------------------------------------
    const std::vector<std::string> inputs = {"The weather is nice today.", "你好，世界 🙂"};
    const std::vector<duet::Output> outs = model.generate(inputs, params);
    expect(outs.size() == 2, "one output per input");
    for (const auto &o : outs) {
        expect(o.sequences.size() == 1, "one sequence");
        expect(!o.sequences[0].token_ids.empty() && o.sequences[0].token_ids.size() <= 8, "token ids within max_new_tokens");
        expect(std::isfinite(o.sequences[0].score), "finite score");
        expect(o.input_tokens > 0 && !o.truncated, "input info");
    }
    std::vector<std::string> streamed(2);
    const auto again = model.generate(inputs, params, [&](std::size_t input, std::string_view piece, int32_t) {
        streamed.at(input) += piece;
    });
    for (std::size_t i = 0; i < 2; i++) {
        expect(streamed[i] == again[i].sequences[0].text, "streamed \"" + streamed[i] + "\" == text \"" + again[i].sequences[0].text + "\"");
        expect(again[i].sequences[0].token_ids == outs[i].sequences[0].token_ids, "greedy is deterministic");
    }
    const duet::Output single = model.generate(inputs[0]);
    expect(!single.sequences.empty(), "single input without params");

    int calls = 0;
    const duet::Output stopped = model.generate(inputs[0], params, [&](std::size_t, std::string_view, int32_t) {
        ++calls;
        return duet::Flow::Stop;
    });
    expect(calls == 1 && stopped.sequences[0].finish_reason == duet::FinishReason::Cancelled, "Flow::Stop cancels");

    calls = 0;
    expect_boom("generate callback", 7, [&] {
        model.generate(inputs, params, [&](std::size_t, std::string_view, int32_t) {
            ++calls;
            throw Boom(7);
        });
    });
    expect(calls == 1, "a callback that threw is not called again (" + std::to_string(calls) + " calls)");
    expect_boom("generate beam callback", 8, [&] {
        duet::Params beams;
        beams.set("num_beams", 3).set("max_new_tokens", 4);
        model.generate(inputs, beams, [&](std::size_t, std::string_view, int32_t) -> void { throw Boom(8); });
    });
    expect_error("empty batch", DUET_STATUS_INVALID_ARGUMENT, [&] { model.generate(std::vector<std::string>{}); });
    expect_error("NUL inside an input", DUET_STATUS_INVALID_ARGUMENT,
                 [&] { model.generate(std::vector<std::string>{std::string("a\0b", 3)}); });
    {
        duet::Params tiny;
        tiny.set("max_input_tokens", 3);
        expect_error("input too long", DUET_STATUS_INPUT_TOO_LONG, [&] { model.generate(inputs[0], tiny); });
        tiny.set("truncate_input", true).set("max_new_tokens", 4);
        const auto o = model.generate(inputs[0], tiny);
        expect(o.truncated && o.input_tokens == 3, "truncation reported");
    }

    // -- summarize with progress; exceptions from the progress lambda -------------------------
    {
        std::string doc;
        for (int i = 0; i < 600; i++) doc += (i % 9 == 8) ? "river storm. " : "council library museum ";
        duet::Params s;
        s.set("summary_length", "short");
        std::size_t progress_calls = 0;
        std::string streamed_summary;
        const duet::Reply r = model.summarize(doc, s, [&](std::size_t done, std::size_t total, std::size_t level) {
            ++progress_calls;
            expect(done <= total && level >= 1, "progress counts");
        }, [&](std::string_view piece) { streamed_summary += piece; });
        expect(progress_calls > 0, "progress was reported");
        expect(r.stat("chunks") >= 1 && r.stat("levels") >= 1, "summary stats");
        expect(streamed_summary == r.text(), "streamed summary == text");
        expect_error("unknown stat", DUET_STATUS_INVALID_ARGUMENT, [&] { r.stat("no_such_stat"); });
        expect_boom("progress callback", 9, [&] {
            model.summarize(doc, s, [](std::size_t, std::size_t, std::size_t) { throw Boom(9); });
        });
        expect_error("empty document", DUET_STATUS_INVALID_ARGUMENT, [&] { model.summarize("   "); });
    }

    // -- translate: T5's task prefix (en to de) or, for BART, not a translation model ---------
    {
        duet::Params tp;
        tp.set("max_new_tokens", 6);
        if (model.info_json().find("\"task prefix\"") != std::string::npos) {
            const duet::Reply r = model.translate("The house is wonderful.", "de", "", tp);
            expect(r.stat("chunks") == 1, "one chunk");
            const duet::Reply same = model.translate("The house is wonderful.", "deu", "en", tp);
            expect(same.text() == r.text(), "deu from en names the same pair as de");
            expect_error("unknown target", DUET_STATUS_UNKNOWN_LANGUAGE, [&] { model.translate("x", "fr", "", tp); });
        } else {
            expect_error("not a translation model", DUET_STATUS_UNSUPPORTED, [&] { model.translate("x", "fr"); });
        }
    }

    // -- cancel tokens and deadlines ----------------------------------------------------------
    {
        std::string doc;
        for (int i = 0; i < 3000; i++) doc += (i % 9 == 8) ? "river storm. " : "council library museum ";
        duet::Params p;
        p.set("max_new_tokens", 8);
        {
            duet::CancelToken token;
            p.set_cancel_token(token);
            token.cancel();
            expect_error("cancelled token", DUET_STATUS_CANCELLED, [&] { model.generate(inputs[0], p); });
            token.reset();
            expect(!model.generate(inputs[0], p).sequences.empty(), "a reset token lets calls run");
            // cancelled from the streaming lambda: the call ends at its next step
            expect_error("cancelled while streaming", DUET_STATUS_CANCELLED, [&] {
                duet::Params many;
                many.set("max_new_tokens", 40).set("min_new_tokens", 40).set_cancel_token(token);
                model.generate(inputs[0], many, [&](std::size_t, std::string_view, int32_t) { token.cancel(); });
            });
            token.reset();
            // cancelled from another thread during a long summary: the first progress report
            // lets the other thread cancel, and waits until it has
            std::promise<void> started, cancelled;
            std::thread canceller([&] {
                started.get_future().wait();
                token.cancel();
                cancelled.set_value();
            });
            bool first = true;
            std::future<void> cancelled_done = cancelled.get_future();
            try {
                model.summarize(doc, p, [&](std::size_t, std::size_t, std::size_t) {
                    if (first) {
                        first = false;
                        started.set_value();
                        cancelled_done.wait();
                    }
                });
                expect(false, "a summary cancelled from another thread finished");
            } catch (const duet::Error &e) {
                expect(e.status() == DUET_STATUS_CANCELLED, std::string("cross-thread cancel: ") + e.status_name());
            }
            if (first) started.set_value(); // (no progress at all: let the thread end)
            canceller.join();
        } // the CancelToken object is gone; the params keep the token alive
        expect_error("token outlives its object", DUET_STATUS_CANCELLED, [&] { model.generate(inputs[0], p); });
        p.clear_cancel_token();
        expect(!model.generate(inputs[0], p).sequences.empty(), "no token after clear_cancel_token");
        p.set("timeout_ms", 1);
        expect_error("deadline", DUET_STATUS_DEADLINE_EXCEEDED, [&] { model.summarize(doc, p); });
    }

    // -- assist --------------------------------------------------------------------------------
    {
        std::string text;
        const duet::Reply r = model.assist("What is the capital of France?", params, [&](std::string_view p) { text += p; });
        expect(text == r.text(), "assist streams its text");
        expect_boom("assist callback", 10, [&] { model.assist("Why?", [](std::string_view) { throw Boom(10); }); });
    }

    // -- chat: a cancelled turn leaves the conversation exactly as it was ----------------------
    // The cancelled message is made just short of the input limit on its own, so that with any
    // history the prompt would have to drop old turns to fit; being cancelled, it must drop none.
    {
        const std::size_t limit = 96;
        duet::Params cp;
        cp.set("max_new_tokens", 6).set("max_input_tokens", limit);
        std::string long_message = "Tell me a story";
        for (;;) {
            const std::string longer = long_message + " about the river";
            try {
                const duet::Reply probe = model.assist(longer, cp);
                if (static_cast<std::size_t>(probe.stat("prompt_tokens")) + 8 >= limit) {
                    long_message = longer;
                    break;
                }
            } catch (const duet::Error &e) {
                if (e.status() != DUET_STATUS_INPUT_TOO_LONG) throw;
                break;
            }
            long_message = longer;
        }
        duet::Chat chat = model.chat(cp);
        chat.send("Hello there.");
        chat.send("What happened next?");
        const std::size_t before = chat.turns();
        expect(before >= 1, "the chat has history");
        expect_boom("chat callback", 11, [&] { chat.send(long_message, [](std::string_view) { throw Boom(11); }); });
        expect(chat.turns() == before, "a turn cancelled by an exception leaves the chat as it was: " +
                                           std::to_string(before) + " turns before, " + std::to_string(chat.turns()) + " after");
        chat.reset();
        chat.send("Hello again.");
        chat.send("And then?");
        const std::size_t before2 = chat.turns();
        const duet::Reply r = chat.send(long_message, [](std::string_view) { return duet::Flow::Stop; });
        expect(r.finish_reason() == duet::FinishReason::Cancelled, "Flow::Stop cancels the turn");
        expect(chat.turns() == before2, "a turn cancelled by Flow::Stop leaves the chat as it was: " +
                                            std::to_string(before2) + " turns before, " + std::to_string(chat.turns()) +
                                            " after (dropped_turns " + std::to_string(r.stat("dropped_turns")) + ")");
    }

    // -- embed, rerank, index ------------------------------------------------------------------
    const std::vector<std::string> passages = {
        "Scientists discovered a new species of frog in the rainforest.",
        "The train to the airport leaves every twenty minutes.",
        "A team of young scientists found the small green frog near the river.",
    };
    const std::string query = "Where did scientists discover a new frog?";
    const auto vectors = model.embed(passages);
    expect(vectors.size() == passages.size(), "one vector per text");
    for (const auto &v : vectors) {
        double norm = 0;
        for (float x : v) norm += static_cast<double>(x) * x;
        expect(v.size() == model.embedding_dim() && std::fabs(norm - 1.0) < 1e-4, "unit vectors of embedding_dim");
    }
    expect(model.embed(passages[0]) == vectors[0], "single embed == batch row");
    const std::vector<double> scores = model.rerank(query, passages);
    expect(scores.size() == passages.size(), "one score per passage");
    for (std::size_t i = 0; i < passages.size(); i++) {
        const double one = model.rerank(query, {passages[i]}).at(0);
        expect(std::fabs(one - scores[i]) < 1e-4, "batched rerank == one at a time");
    }
    expect_error("rerank no passages", DUET_STATUS_INVALID_ARGUMENT, [&] { model.rerank(query, {}); });
    expect_error("rerank blank query", DUET_STATUS_INVALID_ARGUMENT, [&] { model.rerank("  ", passages); });

    {
        duet::Index index(model);
        for (std::size_t i = 0; i < passages.size(); i++) index.add(static_cast<int64_t>(10 + i), passages[i]);
        expect(index.size() == passages.size(), "index size");
        expect_error("duplicate id", DUET_STATUS_INVALID_ARGUMENT, [&] { index.add(10, "again"); });
        const auto hits = index.search(query, 2);
        expect(hits.size() == 2, "k hits");
        expect(hits.size() == 2 && hits[0].score >= hits[1].score, "best first");
        expect(index.search(query, 10).size() == passages.size(), "fewer hits than k when the index is smaller");
        expect_error("k = 0", DUET_STATUS_INVALID_ARGUMENT, [&] { index.search(query, 0); });
        index.add_many({100, 101}, {"a frog by the river", "a storm over the market"});
        expect(index.text(100) == "a frog by the river", "text() reads the stored text back");
        expect_error("add_many: a present id", DUET_STATUS_INVALID_ARGUMENT, [&] { index.add_many({100}, {"again"}); });
        expect_error("text: absent id", DUET_STATUS_INVALID_ARGUMENT, [&] { index.text(99999); });
        const auto by_keyword = index.search("storm market", 1, duet::Params().set("search_mode", "keyword"));
        expect(by_keyword.size() == 1 && by_keyword[0].id == 101, "keyword search finds the only entry with both words");
        expect(index.search(query, 3, duet::Params().set("search_mode", "hybrid")).size() == 3, "hybrid search");
        index.remove(100);
        index.remove(101);
        const auto reranked = index.search(query, 2, 3);
        expect(reranked.size() == 2, "reranked hits");
        index.save(index_file);
        index.remove(10);
        expect_error("absent id", DUET_STATUS_INVALID_ARGUMENT, [&] { index.remove(10); });
        expect(index.size() == passages.size() - 1, "size after remove");
        duet::Index loaded = duet::Index::load(model, index_file);
        expect(loaded.size() == passages.size(), "loaded size");
        {
            std::fstream f(index_file, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(30);
            f.put('X');
        }
        expect_error("corrupt index", DUET_STATUS_INDEX_FILE, [&] { duet::Index::load(model, index_file); });
        expect_error("missing index", DUET_STATUS_IO, [&] { duet::Index::load(model, index_file + ".missing"); });
    }

    // -- moved-from objects throw duet::Error, they do not crash --------------------------------
    {
        duet::Params p;
        duet::Params q = std::move(p);
        q.set("max_new_tokens", 4);
        expect_error("moved-from Params", DUET_STATUS_NULL_POINTER, [&] { p.set("max_new_tokens", 4); });
        expect_error("moved-from Params passed in", DUET_STATUS_NULL_POINTER, [&] { model.generate(inputs[0], p); });
        p = std::move(q); // a moved-from object can be assigned to again
        p.set("max_new_tokens", 5);

        duet::Model m2 = std::move(model);
        expect_error("moved-from Model", DUET_STATUS_NULL_POINTER, [&] { model.generate(inputs[0]); });
        expect_error("moved-from Model chat", DUET_STATUS_NULL_POINTER, [&] { model.chat(); });
        expect_error("moved-from Model embed", DUET_STATUS_NULL_POINTER, [&] { model.embed("x"); });

        duet::Chat c = m2.chat(p);
        c.send("Hello.");
        duet::Chat c2 = std::move(c);
        expect(c2.turns() == 1, "the moved-to chat has the turn");
        expect_error("moved-from Chat send", DUET_STATUS_NULL_POINTER, [&] { c.send("Hello."); });
        expect_error("moved-from Chat turns", DUET_STATUS_NULL_POINTER, [&] { c.turns(); });

        duet::CancelToken t1;
        duet::CancelToken t2 = std::move(t1);
        expect_error("moved-from CancelToken", DUET_STATUS_NULL_POINTER, [&] { t1.cancel(); });
        expect_error("moved-from CancelToken into Params", DUET_STATUS_NULL_POINTER, [&] { p.set_cancel_token(t1); });
        t2.cancel();

        duet::Index i1(m2);
        duet::Index i2 = std::move(i1);
        expect_error("moved-from Index", DUET_STATUS_NULL_POINTER, [&] { i1.add(1, "x"); });
        i2.add(1, "x");

        duet::Reply r = c2.send("Bye.");
        duet::Reply r2 = std::move(r);
        expect(!r2.text().empty() || true, "moved-to reply readable");
        expect_error("moved-from Reply", DUET_STATUS_NULL_POINTER, [&] { r.text(); });

        // The chat and index keep what they need of the model alive.
        { duet::Model gone = std::move(m2); }
        c2.send("Still there?");
        expect(i2.search("x", 1).size() == 1, "index outlives its model");
    }

    // -- Generator: a range of events; pieces add up to generate()'s text; stop early -------------
    {
        duet::Model model(dir);
        duet::Params gp;
        gp.set("max_new_tokens", 12);
        const std::vector<std::string> two{"The weather is nice today.", "Hello world"};
        const std::vector<duet::Output> want = model.generate(two, gp);
        duet::Generator gen = model.generator(two, gp);
        std::vector<std::string> pieces(two.size());
        std::size_t finished = 0;
        for (const duet::Event &e : gen) {
            if (e.kind == duet::Event::Kind::Text) pieces.at(e.input) += e.piece;
            else finished++;
        }
        const std::vector<duet::Output> got = gen.result();
        for (std::size_t i = 0; i < two.size(); i++) {
            expect(pieces[i] == want[i].sequences[0].text, "generator pieces add up to generate()'s text");
            expect(got[i].sequences[0].token_ids == want[i].sequences[0].token_ids, "generator result equals generate()");
        }
        expect(finished == two.size(), "one Finished event per input");

        // Long enough (exactly 100 tokens, within bart-tiny's 128 positions) that the cancel lands while
        // the scheduler is still decoding.
        duet::Params long_params;
        long_params.set("max_new_tokens", 100).set("min_new_tokens", 100);
        duet::Generator early = model.generator(two, long_params);
        std::size_t texts = 0;
        for (const duet::Event &e : early) {
            if (e.kind == duet::Event::Kind::Text && ++texts == 1) early.cancel();
        }
        expect(texts == 1, "no event after cancel");
        expect(early.result()[0].sequences[0].finish_reason == duet::FinishReason::Cancelled ||
                   early.result()[1].sequences[0].finish_reason == duet::FinishReason::Cancelled,
               "a cancelled generator says Cancelled");
        expect_error("result before the end", DUET_STATUS_INVALID_ARGUMENT, [&] {
            duet::Generator fresh = model.generator(two, gp);
            fresh.result();
        });
        duet::Generator moved = model.generator(two, gp);
        duet::Generator to = std::move(moved);
        expect_error("moved-from Generator", DUET_STATUS_NULL_POINTER, [&] { moved.next(); });
    }

    std::cout << passed << " passed, " << failed << " failed\n";
    return failed != 0;
}
