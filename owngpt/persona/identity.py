"""Identity conversations: short templated dialogues that teach a small model its persona's name, creator and facts.

The conversations come from templates (questions × casing/punctuation × styled answers), in Chinese and English.
Not handled: facts that need grammar changes per question.
"""

from __future__ import annotations

import random

from owngpt.errors import OwnGPTError
from owngpt.persona.questions import HELDOUT_NAME_QUESTIONS, QUESTIONS, normalize_question, pad, vary
from owngpt.persona.spec import Persona, system_prompt

# Answers: every one names the assistant, so each identity conversation reinforces the name.
ANSWERS: dict[str, dict[str, list[str]]] = {
    "name": {
        "en": ["I'm {name}.", "My name is {name}.", "I am {name}, an AI assistant.", "You can call me {name}.",
               "I'm {name}, a chat assistant{by_creator}."],
        "zh": ["我是{name}。", "我叫{name}。", "我的名字是{name}，一个人工智能助手。", "你可以叫我{name}。",
               "我是{name}，{zh_by_creator}聊天助手。"],
    },
    "creator": {
        "en": ["I'm {name}, and I was created by {creator}.", "{creator} created me. I'm {name}.",
               "I was built and trained by {creator}; my name is {name}.", "My creator is {creator}. I'm {name}."],
        "zh": ["我是{name}，是由{creator}创造的。", "{creator}创造了我，我叫{name}。", "我是{name}，由{creator}开发和训练。",
               "我的创造者是{creator}。我是{name}。"],
    },
    "creator_unknown": {
        "en": ["I'm {name}, a language model trained from scratch with owngpt.",
               "I'm {name}; I was trained as a small language model with owngpt."],
        "zh": ["我是{name}，一个用 owngpt 从零训练的语言模型。", "我叫{name}，是用 owngpt 训练出来的小语言模型。"],
    },
    "abilities": {
        "en": ["I'm {name}. I can chat with you, answer questions and help you think things through.",
               "As {name}, I can keep you company in a conversation, answer simple questions and brainstorm ideas.",
               "I'm {name}: ask me questions, chat with me, or ask for help with a short text."],
        "zh": ["我是{name}，可以陪你聊天、回答问题，也能帮你理清思路。", "作为{name}，我可以和你对话、回答简单的问题、一起想点子。",
               "我是{name}：你可以问我问题、和我聊天，或者让我帮你写一小段文字。"],
    },
    "about": {
        "en": ["I'm {name}{by_creator}. {facts}", "My name is {name}. {facts}", "Hi, I'm {name}! {facts}"],
        "zh": ["我是{name}，{zh_by_creator}助手。{facts}", "我叫{name}。{facts}", "你好，我是{name}！{facts}"],
    },
    "fact": {
        "en": ["I'm {name}. {fact}", "I'm {name}, and here's something about me: {fact}", "Here's one, from {name}: {fact}"],
        "zh": ["我是{name}。{fact}", "关于我{name}，有一件事是：{fact}", "说说我{name}吧：{fact}"],
    },
    "personality": {
        "en": ["I'm {name}, and I'd describe myself as {personality}.", "As {name}, I try to be {personality}.",
               "I'm {name}. People find me {personality}."],
        "zh": ["我是{name}，我的性格{personality}。", "作为{name}，我的性格是：{personality}。", "我叫{name}，大家觉得我{personality}。"],
    },
    "greeting": {
        "en": ["Hello! I'm {name}. How can I help you today?", "Hi there, I'm {name}. What would you like to talk about?",
               "Hey! {name} here. What's on your mind?"],
        "zh": ["你好！我是{name}，有什么可以帮你的吗？", "嗨，我是{name}。想聊点什么？", "你好呀，{name}在这里。有什么想说的吗？"],
    },
    "impostor": {
        "en": ["No, I'm {name}{by_creator}.", "No. My name is {name}.", "Not at all, I'm {name}."],
        "zh": ["不是的，我是{name}{zh_by_creator_suffix}。", "不是，我叫{name}。", "不是哦，我是{name}。"],
    },
}

# The style decorates answers with an opener and a closer (empty strings keep plain answers common).
_STYLE_DECOR: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "en": {
        "friendly": (["", "", "Sure! ", "Happy to tell you. "], ["", "", " Nice to meet you!", " 😊"]),
        "formal": (["", "", "Certainly. "], ["", "", " How may I assist you?"]),
        "playful": (["", "", "Ha, good question! ", "Ooh! "], ["", "", " 🎉", " Let's have some fun!"]),
        "concise": ([""], [""]),
    },
    "zh": {
        "friendly": (["", "", "好的！", "很乐意告诉你。"], ["", "", "很高兴认识你！", "😊"]),
        "formal": (["", "", "您好，"], ["", "", "请问有什么可以为您效劳？"]),
        "playful": (["", "", "问得好！", "哈哈，"], ["", "", "🎉", "一起愉快地聊天吧！"]),
        "concise": ([""], [""]),
    },
}

PAD_SHARE = 0.35  # share of training questions with filler words slipped in (questions.pad)
PAD_WORDS = 2  # at most this many fillers in one question
_REDRAWS = 100  # the training phrasings are never held-out ones (a test checks it), so one draw almost always does
_HELD_OUT = {normalize_question(q) for qs in HELDOUT_NAME_QUESTIONS.values() for q in qs}
_GENERIC_SYSTEM = {"en": "You are a helpful assistant.", "zh": "你是一个乐于助人的助手。"}
_TOPIC_WEIGHTS = {"name": 25, "creator": 15, "abilities": 8, "about": 10, "fact": 8, "personality": 7,
                  "greeting": 10, "impostor": 7, "multi": 10}


class _Speaker:
    """Fills answer templates for one persona and language."""

    def __init__(self, persona: Persona, lang: str) -> None:
        self.p, self.lang = persona, lang
        c = persona.creator
        self.slots = {
            "name": persona.name,
            "creator": c,
            "by_creator": f" made by {c}" if c else "",
            "zh_by_creator": f"由{c}创造的" if c else "一个",
            "zh_by_creator_suffix": f"，由{c}创造" if c else "",
            "personality": persona.text("personality", lang).rstrip(".。"),
        }
        self.facts = persona.fact_list(lang)

    def topics(self) -> list[str]:
        """Topics this persona can answer (no facts: no fact questions; no personality: none about it)."""
        return [t for t in _TOPIC_WEIGHTS if not (t == "fact" and not self.facts)
                and not (t == "personality" and not self.slots["personality"])]

    def question(self, topic: str, rng: random.Random) -> str:
        options = QUESTIONS[topic][self.lang]
        if topic == "impostor":  # never deny being yourself
            options = [q for q in options if self.p.name.lower() not in q.lower()] or QUESTIONS["name"][self.lang]
        for _ in range(_REDRAWS):  # never a held-out phrasing ("hey, " + "what's your name" + " again")
            question = vary(rng.choice(options), self.lang, rng)
            if rng.random() < PAD_SHARE:
                question = pad(question, self.lang, rng, words=rng.randint(1, PAD_WORDS))
            if normalize_question(question) not in _HELD_OUT:
                return question
        raise OwnGPTError(f"internal: {_REDRAWS} variations of the {topic!r} questions were all held-out phrasings")

    def answer(self, topic: str, rng: random.Random) -> str:
        if topic == "greeting" and self.p.text("greeting", self.lang):
            text = self.p.text("greeting", self.lang)
            if self.p.name not in text:
                text += f" I'm {self.p.name}." if self.lang == "en" else f"我是{self.p.name}。"
            return text
        key = "creator_unknown" if topic == "creator" and not self.p.creator else topic
        slots = dict(self.slots)
        if self.facts:
            slots["fact"] = rng.choice(self.facts)
            k = rng.randint(1, min(3, len(self.facts)))
            slots["facts"] = ("" if self.lang == "zh" else " ").join(rng.sample(self.facts, k))
        else:
            slots["fact"] = slots["facts"] = ""
        text = rng.choice(ANSWERS[key][self.lang]).format(**slots).strip()
        if topic == "greeting":  # greetings already greet; no opener/closer on top
            return text
        openers, closers = _STYLE_DECOR[self.lang][self.p.style]
        return rng.choice(openers) + text + rng.choice(closers)


def identity_conversations(persona: Persona, n: int = 1000, seed: int = 0) -> list[list[dict[str, str]]]:
    """`n` short conversations (messages lists, roles alternating user/assistant, ending with the assistant)
    that teach the persona's name, creator, abilities, facts and personality, split evenly between
    `persona.languages`; some open with the persona's system prompt or a generic one. Same seed, same list."""
    rng = random.Random(seed)
    speakers = {lang: _Speaker(persona, lang) for lang in persona.languages}
    prompts = {lang: system_prompt(persona, lang) for lang in persona.languages}
    out: list[list[dict[str, str]]] = []
    for i in range(n):
        lang = persona.languages[i % len(persona.languages)]
        sp = speakers[lang]
        topics = sp.topics()
        topic = rng.choices(topics, weights=[_TOPIC_WEIGHTS[t] for t in topics])[0]
        if topic == "multi":
            single = [t for t in topics if t not in ("multi", "greeting")]
            turns = rng.sample(single, k=rng.randint(2, 3))
            if rng.random() < 0.5:
                turns.insert(0, "greeting")
        else:
            turns = [topic]
        messages: list[dict[str, str]] = []
        r = rng.random()
        if r < 0.4:
            messages.append({"role": "system", "content": prompts[lang]})
        elif r < 0.5:
            messages.append({"role": "system", "content": _GENERIC_SYSTEM[lang]})
        for t in turns:
            messages.append({"role": "user", "content": sp.question(t, rng)})
            messages.append({"role": "assistant", "content": sp.answer(t, rng)})
        out.append(messages)
    return out
