"""The slash-command language: settings, errors that keep the chat going, reset/system/quit/help."""

from __future__ import annotations



from chat_fixtures import run, session_of, tok  # noqa: F401 - fixtures


def test_settings_commands(tok):
    session = session_of(tok)
    assert run(session, "/temperature 0.3").message == "temperature = 0.3"
    assert session.gen.temperature == 0.3
    run(session, "/topk 7")
    run(session, "/topp 0.5")
    assert (session.gen.top_k, session.gen.top_p) == (7, 0.5)
    for bad in ("/temperature hot", "/temperature -1", "/topk 2.5", "/topp 0", "/topp 1.5"):
        result = run(session, bad)
        assert result.error and result.message
    assert (session.gen.temperature, session.gen.top_k, session.gen.top_p) == (0.3, 7, 0.5)
    assert "temperature = 0.3" in run(session, "/settings").message


def test_a_temperature_that_would_break_sampling_is_an_error_and_the_chat_goes_on(tok):
    session = session_of(tok, seed=2**64 - 1)  # the largest seed: the next replies' seeds wrap around
    for bad in ("/temperature inf", "/temperature nan", "/temperature 1e-45"):
        result = run(session, bad)
        assert result.error and "temperature must be 0 (greedy) or a finite number >= 0.0001" in result.message
    assert session.gen.temperature == 1.0
    assert isinstance(run(session, "hi").reply, str) and isinstance(run(session, "and you?").reply, str)
    assert len(session.messages) == 4


def test_reset_system_quit_help_and_unknown(tok):
    session = session_of(tok)
    run(session, "hi")
    assert len(session.messages) == 2
    assert not run(session, "/reset").error and session.messages == []
    assert run(session, "/system You are Nova.").message == "system prompt set"
    assert session.system == "You are Nova."
    assert "You are Nova." in run(session, "/system").message
    run(session, "/system -")
    assert session.system is None
    assert run(session, "/quit").quit and run(session, "/exit").quit
    help_text = run(session, "/help").message
    for name in ("/reset", "/system", "/temperature", "/topk", "/topp", "/regenerate", "/save", "/load", "/quit"):
        assert name in help_text
    unknown = run(session, "/temprature 2")
    assert unknown.error and "/temperature" in unknown.message and "/help" in unknown.message
    assert run(session, "   ").stream is None and session.messages == []
    run(session, "//not a command")
    assert session.messages[0]["content"] == "/not a command"
