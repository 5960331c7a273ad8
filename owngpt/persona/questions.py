"""Question phrasings: the training questions per topic, and the held-out name questions for benchmarks.

`identity_conversations` (owngpt/persona/identity.py) asks QUESTIONS, varied by `vary` the way people type, and a
share of them with filler words slipped in by `pad`.
`name_questions` draws from the separate HELDOUT_NAME_QUESTIONS list, so a benchmark asks phrasings the model
never saw in training (tests/test_persona_questions.py checks that the two never meet).
"""

from __future__ import annotations

import random
import re

from owngpt.errors import OwnGPTError

# Training questions per topic. The held-out name questions below must never appear here (a test checks it).
QUESTIONS: dict[str, dict[str, list[str]]] = {
    "name": {
        "en": ["What is your name?", "What's your name?", "Who are you?", "What should I call you?",
               "What do I call you?", "Do you have a name?", "Tell me your name.", "May I know your name?",
               "What are you called?", "Your name?", "Who am I talking to?", "What name do you go by?",
               "Can you tell me your name?", "How should I address you?", "What's your name, assistant?",
               # statements and indirect asks, not only questions: people type these too
               "Who is this?", "Who's this?", "Who am I speaking with?", "And you are?", "Who are you, exactly?",
               "I don't know your name yet.", "Please tell me who you are.", "I'm curious, what's your name?",
               "Let me know your name.", "Do you go by any name?", "What do your friends call you?",
               "Introduce yourself by name."],
        "zh": ["你叫什么名字？", "你是谁？", "怎么称呼你？", "你叫什么？", "你有名字吗？", "请问你叫什么名字？",
               "我该怎么称呼你？", "你的名字叫什么？", "请问怎么称呼？", "你是哪位？", "告诉我你的名字。",
               "你叫啥？", "请问你是谁？", "我在和谁说话？",
               "这是谁？", "你哪位？", "我想知道你的名字。", "我还不知道你叫什么。", "请告诉我你是谁。", "你到底是谁？",
               "对了，你叫什么来着？", "说一下你的名字。"],
    },
    "creator": {
        "en": ["Who created you?", "Who made you?", "Who built you?", "Who trained you?", "Who is your creator?",
               "Who developed you?", "Where do you come from?", "Who is behind you?"],
        "zh": ["谁创造了你？", "你是谁开发的？", "谁训练了你？", "你的创造者是谁？", "你是从哪里来的？",
               "谁做的你？", "你是谁做出来的？", "谁是你的开发者？"],
    },
    "abilities": {
        "en": ["What can you do?", "How can you help me?", "What are you able to do?", "What are you good at?",
               "What can I ask you?"],
        "zh": ["你能做什么？", "你会什么？", "你可以帮我做什么？", "你擅长什么？", "我可以问你什么？"],
    },
    "about": {
        "en": ["Tell me about yourself.", "Tell me something about you.", "Introduce yourself, please.",
               "What should I know about you?", "Describe yourself."],
        "zh": ["介绍一下你自己吧。", "说说你自己。", "跟我讲讲你的情况。", "你能介绍一下自己吗？", "做个自我介绍吧。"],
    },
    "fact": {
        "en": ["Tell me a fact about yourself.", "Tell me one thing about you.", "Share something about yourself.",
               "What's something interesting about you?"],
        "zh": ["说一件关于你的事。", "讲一个关于你自己的小事实。", "分享一点你自己的事情吧。", "你有什么有趣的地方？"],
    },
    "personality": {
        "en": ["What is your personality like?", "How would you describe your personality?",
               "What kind of assistant are you?", "What are you like?"],
        "zh": ["你是什么性格？", "你的性格怎么样？", "你是个什么样的助手？", "描述一下你的性格。"],
    },
    "greeting": {
        "en": ["Hi", "Hello", "Hey there", "Good morning", "Hi!", "Hello, anyone there?", "Good evening"],
        "zh": ["你好", "您好", "嗨", "早上好", "哈喽", "在吗？", "晚上好"],
    },
    "impostor": {
        "en": ["Are you ChatGPT?", "Are you Siri?", "Is your name Alexa?", "Are you Claude?", "Are you a human?"],
        "zh": ["你是ChatGPT吗？", "你是Siri吗？", "你是文心一言吗？", "你叫小爱同学吗？", "你是真人吗？"],
    },
}

# Held out for evaluation: other phrasings of "what is your name?", never used to train.
HELDOUT_NAME_QUESTIONS: dict[str, list[str]] = {
    "en": ["Could you tell me what your name is?", "What's the name you were given?", "By what name do people know you?",
           "Sorry, I didn't catch your name.", "Which name do you answer to?", "Remind me, what are you called again?",
           "Hey, what's your name again?", "I'd like to know your name.", "What name should I use for you?",
           "Whom am I chatting with right now?", "Got a name?", "Tell me, what do people call you?"],
    "zh": ["你的名字是什么呀？", "能告诉我你叫啥吗？", "请问您尊姓大名？", "我应该叫你什么呢？", "你叫啥名儿？",
           "大家都叫你什么？", "现在和我聊天的是谁？", "你的名号是什么？", "该用什么名字称呼你？", "你有没有自己的名字？",
           "可以说说你的名字吗？", "你自称什么？"],
}


def vary(question: str, lang: str, rng: random.Random) -> str:
    """Casing / punctuation / filler variation, the way people actually type."""
    r = rng.random()
    if lang == "en":
        if r < 0.2:
            question = question.lower()
        elif r < 0.3:
            question = question.rstrip("?.!")
        elif r < 0.38:
            question = question.lower().rstrip("?.!")
        elif r < 0.44 and question.endswith("?"):
            question = question + "?"
        elif r < 0.52 and question[:1].isupper():
            opener = rng.choice(["hey, ", "so ", "ok, ", "excuse me, ", "btw, ", "um, ", "and "])
            if not question.lower().startswith(opener.rstrip(", ")):  # no "and and you are?"
                question = opener + question[0].lower() + question[1:]
    else:
        if r < 0.2:
            question = question.replace("？", "?").replace("。", ".")
        elif r < 0.35:
            question = question.rstrip("？。?.")
        elif r < 0.45 and not question.startswith("请问"):
            question = "请问" + question
        elif r < 0.52 and not question.rstrip("？。?.").endswith(("吗", "呢", "呀")):
            question = question.rstrip("？。") + "呀？"
    return question


# Words that carry no meaning of their own: `pad` slips them into training questions so a small model learns the
# question by its meaning words, not its exact word sequence. General discourse words; English ones go between any
# two words. Chinese ones by where they may stand: openers at the start, adverbs right after the subject 你 (or a
# leading 我), sentence-final particles before a question mark.
ZH_OPENERS = ("那", "那么", "话说", "顺便问一下，", "其实")
ZH_ADVERBS = ("到底", "其实", "现在", "还")
ZH_PARTICLES = ("呢", "啊", "呀")
FILLERS: dict[str, list[str]] = {
    "en": ["just", "really", "now", "then", "actually", "well", "so", "also", "again", "still", "here", "today",
           "please", "anyway", "though", "exactly", "maybe", "okay", "by the way", "quickly", "then again", "oh"],
    "zh": list(dict.fromkeys(ZH_OPENERS + ZH_ADVERBS + ZH_PARTICLES)),
}
_NOT_AFTER_SUBJECT = "好们的吗呢啊呀？?。.，,！!"  # 你好 is a greeting, 你们/你的 no subject: no adverb after them


def pad(question: str, lang: str, rng: random.Random, words: int = 1) -> str:
    """`question` with `words` filler words (FILLERS) slipped in, as in EDA's random insertion (Wei & Zou, 2019),
    before its closing punctuation: the same question, worded a little differently. English fillers go between
    words, never inside an earlier filler ("by the way" stays whole); one put first takes the question's capital
    (the first word keeps its own if it is "I" or "I'…"). Chinese ones go where FILLERS' comment says. A question
    with no words comes back unchanged."""
    body = question.rstrip("?？.。!！")
    tail = question[len(body):]
    if not body.strip():
        return question
    if lang == "en":
        return _pad_en(body, rng, words) + tail
    for _ in range(words):
        body = _pad_zh(body, tail, rng)
    return body + tail


def _pad_en(body: str, rng: random.Random, words: int) -> str:
    parts = body.split(" ")
    inside: set[int] = set()  # cuts that would split an earlier multi-word filler
    for _ in range(words):
        filler = rng.choice(FILLERS["en"])
        i = rng.randint(0, len(parts))
        while i in inside:  # "by okay the way" -> "by the way okay"
            i += 1
        if i == 0 and parts[0][:1].isupper():
            filler = filler[:1].upper() + filler[1:]
            if parts[0] != "I" and not parts[0].startswith("I'"):
                parts[0] = parts[0][:1].lower() + parts[0][1:]
        n = len(filler.split(" "))
        inside = {j + n if j >= i else j for j in inside} | set(range(i + 1, i + n))
        parts[i:i] = filler.split(" ")
    return " ".join(parts)


def _pad_zh(body: str, tail: str, rng: random.Random) -> str:
    kinds = ["start"]
    subject = [i + 1 for i, ch in enumerate(body[:-1]) if (ch == "你" or (ch == "我" and i == 0))
               and body[i + 1] not in _NOT_AFTER_SUBJECT]
    if subject:
        kinds.append("subject")
    if tail.startswith(("？", "?")) and not body.endswith(("吗", *ZH_PARTICLES)):
        kinds.append("end")
    kind = rng.choice(kinds)
    fresh = [f for f in {"start": ZH_OPENERS, "end": ZH_PARTICLES, "subject": ZH_ADVERBS}[kind] if f not in body]
    if not fresh:  # no "话说话说"
        return body
    if kind == "start":
        return rng.choice(fresh) + body
    if kind == "end":
        return body + rng.choice(fresh)
    i = rng.choice(subject)
    return body[:i] + rng.choice(fresh) + body[i:]


def name_questions(lang: str, n: int, seed: int = 0) -> list[str]:
    """`n` held-out phrasings of "what is your name?" in `lang`, for benchmarking (none is a training
    template). Past the list's length, casing/punctuation variants of it are returned."""
    if lang not in HELDOUT_NAME_QUESTIONS:
        raise OwnGPTError(f"name questions exist for {', '.join(HELDOUT_NAME_QUESTIONS)}, not {lang!r}")
    rng = random.Random(seed)
    base = list(HELDOUT_NAME_QUESTIONS[lang])
    rng.shuffle(base)
    return [q if i < len(base) else vary(q, lang, rng) for i, q in ((i, base[i % len(base)]) for i in range(n))]


def normalize_question(text: str) -> str:
    """Lowercase, punctuation and spaces removed: how tests compare held-out and training phrasings."""
    return re.sub(r"[\W_]+", "", text.lower())
