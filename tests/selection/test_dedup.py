"""Near-duplicate removal: normalisation, MinHash LSH vs an exact oracle, greedy, embeddings."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import random
import threading
import tracemalloc
import unicodedata

import numpy as np
import pytest

from sft_distill.config.merging import build_config
from sft_distill.errors import ConfigError, OutputError
from sft_distill.llm.cache import ResponseCache
from sft_distill.selection.dedup import make_deduplicator
from sft_distill.selection.dedup.embedding import EmbeddingDeduplicator, embedding_key
from sft_distill.selection.dedup.jaccard import (
    JaccardDeduplicator,
    choose_bands,
    exact_jaccard_pairs,
    lsh_recall,
    shingle_hashes,
)
from sft_distill.selection.dedup.jaccard import casefold_compact as normalize_text

# --------------------------------------------------------------------------- an independent oracle


def py_normalize(text: str) -> str:
    """The documented normalisation, written char by char with unicodedata (no numpy)."""
    out = []
    for ch in unicodedata.normalize("NFKC", text).casefold():
        cat = unicodedata.category(ch)
        if cat[0] in "PZ" or cat in ("Cc", "Cf", "Cs"):
            continue
        out.append(ch)
    return "".join(out)


def py_shingles(text: str, n: int = 5) -> set[str]:
    t = py_normalize(text)
    return {t} if len(t) < n else {t[i : i + n] for i in range(len(t) - n + 1)}


def py_jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = py_shingles(a, n), py_shingles(b, n)
    return len(sa & sb) / len(sa | sb)


# --------------------------------------------------------------------------- generated corpus

_EN_VOCAB = (
    "the insurer shall pay benefit when insured person suffers covered illness during policy "
    "period premium must be paid before grace ends claim form medical records hospital invoice "
    "beneficiary may request payment within thirty days after receiving complete documents "
    "contract terminates if applicant fails disclose material facts that would affect decision "
    "to accept risk or rate charged waiting period applies first ninety days except accidents "
    "deductible coinsurance limit annual lifetime outpatient inpatient surgery emergency room "
    "prescription drugs dental vision maternity exclusion preexisting condition cosmetic "
    "experimental treatment war nuclear self inflicted injury fraud notice cancellation refund "
    "pro rata renewal guaranteed age limit dependent spouse child student coverage continues "
    "until end month following event written consent agent broker commission underwriting"
)
EN_WORDS = _EN_VOCAB.split()

_ZH_VOCAB = (
    "保险合同 投保人 保险人 被保险人 受益人 如实告知 保险费 保险金 赔偿 给付 解除 合同 约定 责任 "
    "保险期间 保险事故 及时 通知 理赔 申请 有关 材料 证明 核定 结果 履行 协议 支付 金额 利息 计算 "
    "规定 法律 行政法规 监督管理 机构 批准 设立 公司 经营 范围 业务 规则 偿付能力 准备金 再保险 "
    "风险 评估 年龄 性别 职业 健康状况 应当 可以 不得 或者 以及 的 了 在 对 由 自 之日起 内 "
    "三十日 十日 二年 医疗费用 住院 津贴 免赔额 等待期 续保 退还 现金价值 犯罪 故意 重大过失 "
    "免除 条款 提示 说明 明确 书面 口头 形式 订立 生效 成立 终止 变更 转让 质押 死亡 伤残 疾病"
)
ZH_WORDS = _ZH_VOCAB.split()
ZH_PUNCT = "，。；、"


def en_text(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(EN_WORDS) for _ in range(n_words)]
    out, i = [], 0
    while i < len(words):
        k = rng.randint(6, 14)
        sentence = " ".join(words[i : i + k])
        out.append(sentence[:1].upper() + sentence[1:] + rng.choice([".", ";", "!"]))
        i += k
    return " ".join(out)


def zh_text(rng: random.Random, n_chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < n_chars:
        clause = "".join(rng.choice(ZH_WORDS) for _ in range(rng.randint(3, 7)))
        out.append(clause + rng.choice(ZH_PUNCT))
        size += len(clause)
    return "".join(out)


def mutate(rng: random.Random, text: str, rate: float) -> str:
    """Replace about ``rate`` of the words (English) or characters (Chinese); jitter punctuation."""
    if " " in text:
        words = text.split(" ")
        for i in range(len(words)):
            if rng.random() < rate:
                words[i] = rng.choice(EN_WORDS)
        text = " ".join(words)
    else:
        chars = list(text)
        for i, ch in enumerate(chars):
            if ch not in ZH_PUNCT and rng.random() < rate:
                chars[i] = rng.choice(rng.choice(ZH_WORDS))
        text = "".join(chars)
    # Punctuation, spacing and case changes must not matter after normalisation.
    return text.replace("，", ", ").replace(";", "；").replace("The ", "THE  ")


def make_corpus(n_families: int, n_singles: int, seed: int) -> list[str]:
    """Families of a base text plus variants at several edit rates, and unrelated singletons."""
    rng = random.Random(seed)
    texts = []
    for f in range(n_families):
        base = en_text(rng, rng.randint(40, 90)) if f % 2 else zh_text(rng, rng.randint(120, 300))
        texts.append(base)
        for rate in rng.sample([0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08], 3):
            texts.append(mutate(rng, base, rate))
    for s in range(n_singles):
        texts.append(
            en_text(rng, rng.randint(20, 90)) if s % 2 else zh_text(rng, rng.randint(50, 300))
        )
    rng.shuffle(texts)
    return texts


# --------------------------------------------------------------------------- normalisation, banding


def test_normalize_drops_punctuation_spaces_and_case_and_folds_width():
    assert normalize_text("Hello,  World!\n") == "helloworld"
    assert normalize_text("保险法 第十六条：订立保险合同，") == "保险法第十六条订立保险合同"
    assert normalize_text("ＡＢＣ１２３") == "abc123"  # fullwidth -> ASCII by NFKC
    assert normalize_text("a\u200bb\ud800c") == "abc"  # zero-width space, lone surrogate


@pytest.mark.parametrize(
    "text", ["", "ab", "Hello, World", "保险合同，是投保人与保险人约定。", "x" * 50]
)
def test_shingle_hashes_count_matches_python_substrings(text):
    assert len(shingle_hashes(text, 5)) == len(py_shingles(text, 5))


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.85, 0.9, 0.95])
def test_choose_bands_meets_recall_with_the_most_selective_rows(threshold):
    bands, rows = choose_bands(threshold, 128)
    assert bands * rows <= 128
    assert lsh_recall(threshold, bands, rows) >= 0.99
    # One more row per band (all bands used) would miss more than 1% at the threshold.
    assert lsh_recall(threshold, 128 // (rows + 1), rows + 1) < 0.99


def test_default_banding_is_21_bands_of_6_rows():
    assert choose_bands(0.8, 128) == (21, 6)
    assert JaccardDeduplicator().bands == 21


# --------------------------------------------------------------------------- Jaccard behaviour

INSURANCE_ANSWER = (
    "根据《保险法》第十六条，订立保险合同时，保险人就保险标的或者被保险人的有关情况提出询问的，"
    "投保人应当如实告知。投保人故意或者因重大过失未履行前款规定的如实告知义务，足以影响保险人"
    "决定是否同意承保或者提高保险费率的，保险人有权解除合同。前款规定的合同解除权，自保险人知道"
    "有解除事由之日起，超过三十日不行使而消灭。自合同成立之日起超过二年的，保险人不得解除合同；"
    "发生保险事故的，保险人应当承担赔偿或者给付保险金的责任。"
)
OTHER_ARTICLE = (
    "根据《保险法》第二十三条，保险人收到被保险人或者受益人的赔偿或者给付保险金的请求后，应当及时"
    "作出核定；情形复杂的，应当在三十日内作出核定，但合同另有约定的除外。保险人应当将核定结果通知"
    "被保险人或者受益人；对属于保险责任的，在与被保险人或者受益人达成赔偿或者给付保险金额的协议后"
    "十日内，履行赔偿或者给付保险金义务。"
)


def resolve(items: list[tuple[str, str, float]], **kw) -> dict[str, str]:
    d = JaccardDeduplicator(**kw)
    for sid, text, score in items:
        d.add(sid, text, score)
    return d.resolve()


def test_chinese_near_duplicate_with_changed_characters_and_punctuation_is_found():
    variant = (
        INSURANCE_ANSWER.replace("二年", "两年")
        .replace("消灭", "灭失")
        .replace("，", ", ")
        .replace("。", ".")
    )
    assert variant != INSURANCE_ANSWER and py_jaccard(variant, INSURANCE_ANSWER) >= 0.8
    got = resolve([("a", INSURANCE_ANSWER, 8.0), ("b", variant, 9.0), ("c", OTHER_ARTICLE, 8.5)])
    assert got == {"a": "b"}


def test_two_different_articles_are_not_duplicates():
    assert py_jaccard(INSURANCE_ANSWER, OTHER_ARTICLE) < 0.3
    assert resolve([("a", INSURANCE_ANSWER, 8.0), ("b", OTHER_ARTICLE, 8.0)]) == {}


def test_english_near_duplicate_found_and_different_text_kept():
    a = (
        "The insured must notify the insurer within 30 days of the accident, providing the police "
        "report, medical records and all invoices; late notice may reduce the benefit paid."
    )
    b = a.replace("30 days", "thirty days").upper().replace(", ", " ,  ")
    c = "A premium paid after the grace period does not reinstate the policy automatically."
    assert py_jaccard(a, b) >= 0.8
    got = resolve([("a", a, 7.5), ("b", b, 7.0), ("c", c, 9.0)])
    assert got == {"b": "a"}


def test_best_scored_is_kept_and_ties_go_to_the_smallest_id():
    text = INSURANCE_ANSWER
    got = resolve([("s3", text, 8.0), ("s1", text + "。", 9.5), ("s2", " " + text, 9.5)])
    assert got == {"s2": "s1", "s3": "s1"}


def test_greedy_never_drops_a_sample_below_threshold_of_its_kept_neighbour():
    rng = random.Random(7)
    words = [rng.choice(EN_WORDS) for _ in range(120)]
    a = " ".join(["alpha" + str(i) for i in range(8)] + words[8:])  # head replaced
    b = " ".join(words)
    c = " ".join(words[:-8] + ["omega" + str(i) for i in range(8)])  # tail replaced
    assert py_jaccard(a, b) >= 0.8 and py_jaccard(b, c) >= 0.8 and py_jaccard(a, c) < 0.8
    # Clustering would drop c with a (a-b-c chain); greedy keeps c because b was dropped.
    assert resolve([("a", a, 9.0), ("b", b, 8.0), ("c", c, 7.0)]) == {"b": "a"}


def test_short_texts_are_one_shingle():
    got = resolve([("x", "OK!", 1.0), ("y", "ok", 2.0), ("z", "okay", 3.0), ("e", "", 0.0)])
    assert got == {"x": "y"}


def test_nan_score_ranks_last_and_empty_set_resolves():
    assert resolve([("a", INSURANCE_ANSWER, math.nan), ("b", INSURANCE_ANSWER, 1.0)]) == {"a": "b"}
    assert JaccardDeduplicator().resolve() == {}


def test_duplicate_sample_id_is_rejected():
    d = JaccardDeduplicator()
    d.add("a", "text one", 1.0)
    with pytest.raises(ValueError, match="'a' added twice"):
        d.add("a", "text two", 1.0)


def test_batch_boundaries_do_not_change_the_result():
    texts = make_corpus(20, 20, seed=3)
    one = JaccardDeduplicator(batch_chars=10**9)
    many = JaccardDeduplicator(batch_chars=1)  # flushes after every text
    for i, t in enumerate(texts):
        one.add(f"t{i}", t, float(i % 5))
        many.add(f"t{i}", t, float(i % 5))
    got = one.resolve()
    assert got and got == many.resolve()


def test_saved_indexes_merged_give_the_same_result_as_one_index(tmp_path):
    # --engine ray: each shard sketches its samples and saves the index; the driver merges.
    texts = make_corpus(20, 20, seed=3)
    whole = JaccardDeduplicator()
    parts = [JaccardDeduplicator(), JaccardDeduplicator()]
    for i, t in enumerate(texts):
        whole.add(f"t{i}", t, float(i % 5))
        parts[i % 3 == 0].add(f"t{i}", t, float(i % 5))
    for k, part in enumerate(parts):
        part.save(tmp_path / f"{k}.npz")
    expected = whole.resolve()
    assert expected
    merged = JaccardDeduplicator()
    merged.add("other", "与其他文本都不相同的一段文字，直接加入，与保存的索引混在一起。", 9.0)
    for k in (1, 0):  # in any order
        merged.add_saved(tmp_path / f"{k}.npz")
    assert merged.resolve() == expected
    with pytest.raises(ValueError, match="'t0' added twice"):
        merged.add_saved(tmp_path / "1.npz")
    with pytest.raises(ValueError, match="other dedup settings"):
        JaccardDeduplicator(threshold=0.7).add_saved(tmp_path / "0.npz")


def test_background_sketching_gives_the_same_result_and_closes_cleanly():
    texts = make_corpus(20, 20, seed=3)
    inline = JaccardDeduplicator(min_batch_chars=10**9, batch_chars=10**9)
    background = JaccardDeduplicator(min_batch_chars=50, batch_chars=10**9)
    for i, t in enumerate(texts):
        inline.add(f"t{i}", t, float(i % 5))
        background.add(f"t{i}", t, float(i % 5))
    # Batches went to the worker thread while texts were still being added.
    assert background._worker is not None and inline._worker is None
    got = inline.resolve()
    assert got and got == background.resolve()
    # Closing while a batch is being sketched waits for it and deletes the spill file.
    busy = JaccardDeduplicator(min_batch_chars=1)
    for i, t in enumerate(texts):
        busy.add(f"t{i}", t, 1.0)
    busy.close()
    busy.close()
    assert busy._texts._file.closed


def test_a_failed_background_batch_is_reported_and_the_index_refuses_further_use():
    import errno

    d = JaccardDeduplicator(min_batch_chars=1, batch_chars=10**9)

    def disk_full(blobs):
        raise OSError(errno.ENOSPC, "No space left on device")

    d._texts.extend = disk_full  # the spill file cannot grow
    d.add("a", INSURANCE_ANSWER, 1.0)  # its batch fails in the worker
    with pytest.raises(OutputError, match="dedup spill file: No space left"):
        d.resolve()
    # Never resolve with a batch missing (it used to fail later with an IndexError).
    for attempt in (d.resolve, lambda: d.add("b", "another text", 1.0)):
        with pytest.raises(RuntimeError, match="failed to be indexed"):
            attempt()
    d.close()


def test_invalid_parameters_raise_config_error():
    with pytest.raises(ConfigError, match="threshold"):
        JaccardDeduplicator(threshold=0.0)
    with pytest.raises(ConfigError, match="ngram"):
        JaccardDeduplicator(ngram=0)


# --------------------------------------------------------------------------- exact oracle


@pytest.mark.slow
def test_exact_oracle_matches_brute_force_python_sets():
    texts = make_corpus(25, 50, seed=11)
    sets = [py_shingles(t) for t in texts]
    brute = {}
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            sim = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
            if sim >= 0.7:
                brute[(i, j)] = sim
    got = {(i, j): s for i, j, s in exact_jaccard_pairs(texts, 0.7)}
    assert len(brute) > 40
    assert got.keys() == brute.keys()
    assert all(got[k] == pytest.approx(brute[k]) for k in got)


@pytest.mark.slow
def test_lsh_recall_and_precision_against_exact_oracle_on_2000_texts():
    texts = make_corpus(325, 700, seed=2024)
    assert len(texts) == 2000
    exact = {(i, j): s for i, j, s in exact_jaccard_pairs(texts, 0.8)}
    # The corpus must hold pairs near the threshold, where LSH is weakest.
    assert sum(0.8 <= s < 0.85 for s in exact.values()) >= 30

    d = JaccardDeduplicator()
    for i, t in enumerate(texts):
        d.add(str(i), t, float(len(t) % 7))
    found = {tuple(sorted((int(a), int(b)))): s for a, b, s in d.near_duplicate_pairs()}
    true_found = found.keys() & exact.keys()
    assert len(true_found) / len(exact) >= 0.98
    assert true_found == found.keys()  # precision 1.0: every reported pair is verified
    assert all(found[k] == pytest.approx(exact[k]) for k in found)

    mapping = d.resolve()
    assert mapping
    for dropped, kept in mapping.items():
        assert tuple(sorted((int(dropped), int(kept)))) in exact
        assert kept not in mapping


def test_planted_variants_below_threshold_are_not_reported():
    rng = random.Random(5)
    base = zh_text(rng, 300)
    far = mutate(random.Random(6), base, 0.08)
    sim = py_jaccard(base, far)
    assert 0.3 < sim < 0.8
    assert resolve([("a", base, 1.0), ("b", far, 2.0)]) == {}


# --------------------------------------------------------------------------- embeddings


def planted_vectors(n: int, seed: int) -> tuple[list[str], dict[str, np.ndarray]]:
    """Texts t0..tn-1 with vectors: every third is a noisy copy of the previous one."""
    rng = np.random.default_rng(seed)
    vecs: dict[str, np.ndarray] = {}
    texts = []
    for i in range(n):
        v = vecs[texts[-1]] + rng.normal(0, 0.02, 32) if i % 3 == 2 else rng.normal(0, 1, 32)
        texts.append(f"t{i}")
        vecs[texts[-1]] = v
    return texts, vecs


def brute_greedy(texts, vecs, scores, threshold):
    v = {t: x / np.linalg.norm(x) for t, x in vecs.items()}
    order = sorted(texts, key=lambda t: (-scores[t], t))
    kept: list[str] = []
    out = {}
    for t in order:
        hit = next((k for k in kept if float(v[t] @ v[k]) >= threshold), None)
        if hit is None:
            kept.append(t)
        else:
            out[t] = hit
    return out


async def test_embedding_sync_fn_runs_in_a_thread_and_matches_brute_force():
    texts, vecs = planted_vectors(90, seed=1)
    scores = {t: float(i % 4) for i, t in enumerate(texts)}
    threads = set()

    def embed(batch):
        threads.add(threading.get_ident())
        return np.stack([vecs[t] for t in batch])

    d = EmbeddingDeduplicator(embed, threshold=0.95, batch_size=8, block_size=7)
    for t in texts:
        d.add(t, t, scores[t])
    got = await d.resolve()
    assert len(got) == 30
    assert got == brute_greedy(texts, vecs, scores, 0.95)
    assert threading.get_ident() not in threads


async def test_embedding_async_fn_is_batched_and_bounded():
    texts, vecs = planted_vectors(150, seed=2)
    calls: list[int] = []
    in_flight = 0
    peak = 0

    async def embed(batch):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        calls.append(len(batch))
        await asyncio.sleep(0.01)
        in_flight -= 1
        return [vecs[t].tolist() for t in batch]  # list of lists is accepted

    d = EmbeddingDeduplicator(embed, batch_size=16)
    for i, t in enumerate(texts):
        d.add(t, t, float(i))
    got = await d.aresolve()
    assert len(calls) == math.ceil(150 / 16) and max(calls) <= 16 and sum(calls) == 150
    assert 1 < peak <= 4
    # Higher score wins, so each noisy copy (added later, higher score) keeps its place.
    assert got == {f"t{i - 1}": f"t{i}" for i in range(2, 150, 3)}


async def test_embedding_plain_function_returning_a_coroutine_is_awaited():
    texts, vecs = planted_vectors(6, seed=3)

    async def real(batch):
        return np.stack([vecs[t] for t in batch])

    d = EmbeddingDeduplicator(lambda batch: real(batch), batch_size=4)
    for t in texts:
        d.add(t, t, 1.0)
    # Equal scores: the smaller id is kept.
    assert await d.resolve() == {"t2": "t1", "t5": "t4"}


def bad_embed(batch):
    return np.ones((len(batch) - 1, 3))


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (bad_embed, r"bad_embed returned shape \(2, 3\) for 3 texts"),
        (lambda b: np.ones(len(b)), r"returned shape \(3,\)"),
        (lambda b: [[1.0, 2.0], [1.0]] + [[1.0]] * (len(b) - 2), "not an \\(n, d\\) array"),
        (lambda b: np.full((len(b), 2), np.nan), "NaN or infinite"),
        (lambda b: np.zeros((len(b), 2)), "all-zero vector"),
    ],
)
async def test_embedding_wrong_output_is_a_config_error_naming_embed_fn(fn, message):
    d = EmbeddingDeduplicator(fn, batch_size=8)
    for i in range(3):
        d.add(f"s{i}", f"text {i}", 1.0)
    with pytest.raises(ConfigError, match=message) as info:
        await d.resolve()
    assert "embed_fn" in str(info.value)


async def test_embedding_error_from_embed_fn_propagates():
    async def boom(batch):
        raise RuntimeError("endpoint down")

    d = EmbeddingDeduplicator(boom, batch_size=1)
    for i in range(5):
        d.add(f"s{i}", "x", 1.0)
    with pytest.raises(RuntimeError, match="endpoint down"):
        await d.resolve()


# --------------------------------------------------------------------------- factory


def test_make_deduplicator_follows_config():
    d = make_deduplicator(build_config({"dedup_threshold": 0.9, "dedup_ngram": 3}))
    assert isinstance(d, JaccardDeduplicator)
    assert (d.threshold, d.ngram) == (0.9, 3)

    e = make_deduplicator(build_config({"embed_batch_size": 7}, embed_fn=bad_embed))
    assert isinstance(e, EmbeddingDeduplicator)
    assert (e.threshold, e.batch_size, e.embed_fn) == (0.95, 7, bad_embed)

    with pytest.raises(ConfigError, match="needs an embed_fn"):
        make_deduplicator(build_config({"dedup_method": "embedding"}))


async def test_embedding_object_with_async_call_is_awaited_on_the_loop():
    texts, vecs = planted_vectors(9, seed=4)
    loop_thread = threading.get_ident()

    class Client:
        async def __call__(self, batch: list[str]) -> np.ndarray:
            assert threading.get_ident() == loop_thread
            return np.stack([vecs[t] for t in batch])

    d = EmbeddingDeduplicator(Client(), batch_size=2)
    for t in texts:
        d.add(t, t, 1.0)
    assert await d.resolve() == {"t2": "t1", "t5": "t4", "t8": "t7"}


# --------------------------------------------------------------------------- memory, sketch, cache


@pytest.mark.slow
def test_jaccard_index_keeps_no_text_and_under_1_kb_per_sample():
    rng = random.Random(17)
    texts = [en_text(rng, 400) if i % 2 else zh_text(rng, 1200) for i in range(5000)]
    ids = [f"sample-{i:08d}" for i in range(len(texts))]
    d = JaccardDeduplicator()
    normalize_text("x")  # builds the shared 1 MB character table outside the measurement
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, (sid, t) in enumerate(zip(ids, texts, strict=True)):
            d.add(sid, t, float(i % 3))
        d._flush()
        per_sample = (tracemalloc.get_traced_memory()[0] - before) / len(texts)
        print(f"{per_sample:.0f} B per sample")
    finally:
        tracemalloc.stop()
    # Each text is 2-3 KB in memory: keeping it would break the bound on its own.
    assert sum(map(len, texts)) / len(texts) > 1000
    assert per_sample < 600  # about 430 B: see JaccardDeduplicator
    # Besides the ids, no attribute holds strings (the texts live in the spill file).
    held = [v for k, v in vars(d).items() if k not in ("_ids", "_id_set")]
    assert not any(isinstance(v, list) and any(isinstance(x, str) for x in v) for v in held)
    assert d._texts.nbytes >= sum(len(normalize_text(t)) for t in texts)
    d.close()
    d.close()  # safe twice


def test_resolve_twice_gives_the_same_answer():
    texts = make_corpus(15, 15, seed=8)
    d = JaccardDeduplicator()
    for i, t in enumerate(texts):
        d.add(f"t{i}", t, 1.0)
    first = d.resolve()
    assert first and d.resolve() == first


@pytest.mark.slow
def test_sketch_agreement_estimates_jaccard_for_short_and_long_texts():
    rng = random.Random(9)
    for n_words in (3, 8, 30, 200):
        errors = []
        for _ in range(60):
            a = " ".join(f"{rng.choice(EN_WORDS)}{rng.randint(0, 99)}" for _ in range(n_words))
            b = " ".join(w if rng.random() > 0.05 else "x" + w for w in a.split())
            d = JaccardDeduplicator()
            d.add("a", a, 1.0)
            d.add("b", b, 1.0)
            _, agree = d._index()
            errors.append(float(np.mean(agree[0] == agree[1])) - py_jaccard(a, b))
        # Unbiased (8-bit bins agree by chance 1/256 of the time) and tight, at every size.
        assert abs(np.mean(errors)) < 0.02, n_words
        assert np.std(errors) < 0.06, n_words


async def test_embedding_cache_means_a_rerun_does_not_embed(tmp_path):
    texts, vecs = planted_vectors(60, seed=5)
    calls: list[int] = []

    async def embed(batch):
        calls.append(len(batch))
        return np.stack([vecs[t] for t in batch])

    def run(cache, namespace="model-a"):
        d = EmbeddingDeduplicator(embed, batch_size=16, cache=cache, namespace=namespace)
        for i, t in enumerate(texts):
            d.add(t, t, float(i % 4))
        return d

    with ResponseCache(tmp_path / "cache.sqlite3") as cache:
        first = await run(cache).aresolve()
        assert sum(calls) == 60 and len(first) == 20
        calls.clear()
        again = run(cache)
        assert await again.aresolve() == first
        assert calls == [] and (again.embedded, again.cached) == (0, 60)
        # Another model (namespace) embeds afresh.
        await run(cache, "model-b").aresolve()
        assert sum(calls) == 60
    calls.clear()
    with ResponseCache(tmp_path / "cache.sqlite3") as reopened:
        assert await run(reopened).aresolve() == first
    assert calls == []
    assert embedding_key("m", "text") != embedding_key("m", "text ")


async def test_embedding_texts_are_spilled_not_held():
    d = EmbeddingDeduplicator(bad_embed)
    d.add("a", "first text " * 100, 1.0)
    d.add("b", "第二段文字" * 100, 1.0)
    assert not any(
        isinstance(v, list) and v and v[0] == "first text " * 100 for v in vars(d).values()
    )
    assert d._texts.get(1).decode() == "第二段文字" * 100
    d.close()


def test_make_deduplicator_passes_the_cache(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        e = make_deduplicator(build_config({}, embed_fn=bad_embed), cache=cache)
        assert isinstance(e, EmbeddingDeduplicator) and e.cache is cache


def clustered_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Topic clusters with planted near-copies (cosine ~0.97 to their source)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, 40, n)] * 0.8 + rng.normal(size=(n, dim))
    dup = rng.random(n) < 0.25
    x[dup] = x[rng.integers(0, n, n)[dup]] + 0.1 * rng.normal(size=(int(dup.sum()), dim))
    return x.astype(np.float32)


@pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None, reason="faiss-cpu (extra 'ann') not installed"
)
async def test_approximate_index_agrees_with_the_exact_scan():
    x = clustered_vectors(3000, 32, seed=3)
    texts = [f"v{i}" for i in range(len(x))]
    rows = {t: i for i, t in enumerate(texts)}

    async def embed(batch):
        return x[[rows[t] for t in batch]]

    results = {}
    for approx_above in (None, 1000):
        d = EmbeddingDeduplicator(embed, batch_size=256, block_size=512, approx_above=approx_above)
        for i, t in enumerate(texts):
            d.add(t, t, float(i % 7))
        results[approx_above] = await d.aresolve()
        assert d.approximate == (approx_above is not None)
    exact, approx = results[None], results[1000]
    assert len(exact) > 500
    # Precision: every approximate drop is a real duplicate; recall close to exact.
    v = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert all(float(v[rows[a]] @ v[rows[b]]) >= 0.95 - 1e-6 for a, b in approx.items())
    assert len(approx.keys() & exact.keys()) / len(exact) >= 0.97
