// A streamed multi-turn conversation through the C++ bindings:
//   chat MODEL_DIR [TURNS]
// Checks that the streamed text is the reply's text on every turn, and that an exception thrown
// inside the streaming lambda reaches this caller as that very exception (not a crash), after
// which the conversation goes on. Exits non-zero when a check fails.
#include <cstdlib>
#include <iostream>
#include <string>

#include "duet.hpp"

namespace {

int failures = 0;

void expect(bool ok, const std::string &what) {
    if (!ok) {
        ++failures;
        std::cerr << "FAIL: " << what << "\n";
    }
}

// Thrown from the streaming lambda; only this type may reach the catch below.
struct HangUp {
    std::size_t pieces_seen;
};

} // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " MODEL_DIR [TURNS]\n";
        return 2;
    }
    const int turns = argc > 2 ? std::atoi(argv[2]) : 4;
    try {
        const duet::Model model(argv[1]);
        duet::Params params;
        params.set("max_new_tokens", 12).set("system_prompt", "You answer briefly.");
        duet::Chat chat = model.chat(params);

        std::size_t dropped = 0;
        for (int t = 0; t < turns; t++) {
            const std::string message = "Turn " + std::to_string(t) + ": what did the river do after the storm?";
            std::string streamed;
            std::cout << "user: " << message << "\nassistant: " << std::flush;
            const duet::Reply reply = chat.send(message, [&](std::string_view piece) {
                streamed += piece;
                std::cout << piece << std::flush;
            });
            std::cout << "\n";
            const std::string text = reply.text();
            expect(streamed == text, "turn " + std::to_string(t) + ": streamed \"" + streamed + "\" but the reply is \"" + text + "\"");
            dropped += static_cast<std::size_t>(reply.stat("dropped_turns"));
        }
        const std::size_t kept = chat.turns();
        std::cout << "turns kept: " << kept << ", dropped: " << dropped << "\n";
        expect(kept + dropped == static_cast<std::size_t>(turns), "every turn is kept or reported dropped");

        // An exception thrown while streaming: the C call is cancelled (the exception never
        // crosses the C ABI), the turn is not kept, and the caller gets the HangUp itself.
        bool caught = false;
        try {
            std::size_t pieces = 0;
            chat.send("Tell me a long story.", [&](std::string_view) {
                if (++pieces == 1) throw HangUp{pieces};
            });
            expect(false, "send returned although the lambda threw");
        } catch (const HangUp &e) {
            caught = true;
            expect(e.pieces_seen == 1, "the exception is the one thrown");
        } catch (const std::exception &e) {
            expect(false, std::string("the lambda's exception arrived as another: ") + e.what());
        }
        expect(caught, "the lambda's exception reached the caller");
        // The cancelled turn must leave the conversation as it was: neither added nor making
        // room for itself by dropping old turns.
        expect(chat.turns() == kept, "a turn whose stream threw leaves the chat as it was: " + std::to_string(kept) +
                                         " turns before, " + std::to_string(chat.turns()) + " after");
        std::cout << "exception from the stream: caught in the caller; turns still " << chat.turns() << "\n";

        // The conversation goes on after it.
        std::string streamed;
        const std::size_t before = chat.turns();
        const duet::Reply after = chat.send("Are you still there?", [&](std::string_view piece) { streamed += piece; });
        expect(streamed == after.text(), "streaming after the exception");
        expect(chat.turns() == before + 1 - static_cast<std::size_t>(after.stat("dropped_turns")),
               "the turn after the exception is kept");
        std::cout << "after the exception: " << after.text() << "\n";

        // Stopping the stream on purpose is a cancelled reply, not an error.
        const duet::Reply stopped = chat.send("And then?", [](std::string_view) { return duet::Flow::Stop; });
        expect(stopped.finish_reason() == duet::FinishReason::Cancelled,
               std::string("Flow::Stop gives a cancelled reply, got ") + duet::to_string(stopped.finish_reason()));

        chat.reset();
        expect(chat.turns() == 0, "reset forgets every turn");

        // Errors are exceptions with the status.
        try {
            chat.send("");
            expect(false, "an empty message is refused");
        } catch (const duet::Error &e) {
            std::cout << "empty message: " << e.status_name() << ": " << e.what() << "\n";
            expect(e.status() == DUET_STATUS_INVALID_ARGUMENT, std::string("empty message status ") + e.status_name());
        }
    } catch (const duet::Error &e) {
        std::cerr << "duet error: " << e.status_name() << ": " << e.what() << "\n";
        return 1;
    }
    if (failures) {
        std::cerr << failures << " check(s) failed\n";
        return 1;
    }
    std::cout << "chat (C++): ok\n";
    return 0;
}
