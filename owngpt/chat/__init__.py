"""Chatting with a model: THE reply path (reply.py; defaults in settings.py), history fitting (history.py), MMI
reranking (mmi.py), the conversation state (session.py) and the slash-command language (commands.py).

    from owngpt.chat import ChatSession
    session = ChatSession.from_checkpoint("runs/quickstart/chat")
    print(session.reply("Hi! What is your name?"))

The names below are imported on first use (the package itself imports no torch).
"""

from __future__ import annotations

from owngpt.lazy import lazy_exports

_EXPORTS = {
    "owngpt.chat.commands": ("COMMANDS", "CommandResult", "handle_command", "handle_line"),
    "owngpt.chat.history": ("fit_history",),
    "owngpt.chat.mmi": ("mmi_rerank",),
    "owngpt.chat.reply": ("MMI", "ReplyModel", "load_reply_model", "replies", "reply_config", "reply_prompt",
                          "reply_stop_ids", "resolve_system_prompt", "stream_reply"),
    "owngpt.chat.session": ("ChatSession", "sample_conversation", "settings_summary"),
    "owngpt.chat.settings": ("CHAT_DEFAULTS", "chat_generation_config"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
