"""Write benchmarks/data/pii_labelled.jsonl: labelled zh/en insurance sentences (synthetic values).

    python benchmarks/make_pii_set.py            # seeded: the same file every time
    python benchmarks/make_pii_set.py --rows 480 --seed 2024 --out path.jsonl

Each line: ``{"id", "lang", "text", "spans": [{"type", "start", "end"}]}``. Sentences come from
templates of claims, policy and customer-service text; slots are filled with synthetic personal
data (tests/pii_factory.py: computed check digits, reserved example domains and documentation IP
ranges) or with look-alikes that are NOT personal data (policy and claim numbers, 第X条, dates,
amounts, version and section numbers, ISO numbers, IDs and cards failing their checksums, phone-
shaped order numbers, full-width digits). Only the personal data is labelled. ``NAMES`` is the
name list the benchmark configures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import pii_factory as pf  # noqa: E402

OUT = REPO / "benchmarks" / "data" / "pii_labelled.jsonl"
NAMES = (
    "张伟",
    "王芳",
    "李娜",
    "刘洋",
    "陈静",
    "欧阳娜娜",
    "Zhang Wei",
    "Emily Chen",
    "John Smith",
)

Rng = random.Random


def _mobile(r: Rng) -> str:
    return pf.format_mobile(pf.mobile(r), r.choice(pf.MOBILE_FORMATS))


def _card(r: Rng) -> str:
    card = pf.bank_card(r)
    return r.choice((card, card, pf.group(card), pf.group(card, "-")))


def _id(r: Rng) -> str:
    roll = r.random()
    if roll < 0.1:
        return pf.old_id_number(r)
    if roll < 0.2:
        return pf.id_number_with_x(r)
    return pf.id_number(r)


# Slot -> (label or None for a look-alike, generator).
SLOTS: dict[str, tuple[str | None, Callable[[Rng], str]]] = {
    "ID": ("id_number", _id),
    "MOBILE": ("mobile", _mobile),
    "LANDLINE": ("landline", pf.landline),
    "CARD": ("bank_card", _card),
    "EMAIL": ("email", pf.email),
    "IP": ("ip", lambda r: pf.ipv4(r) if r.random() < 0.7 else pf.ipv6(r)),
    "PASSPORT": ("passport", pf.passport),
    "NAME": ("name", lambda r: r.choice(NAMES[:6])),
    "EN_NAME": ("name", lambda r: r.choice(NAMES[6:])),
    # Names outside the configured list: labelled, and missed unless an NER hook is configured.
    "OTHER_NAME": ("name", lambda r: r.choice(("赵敏", "孙丽华", "周杰", "Mary Jones"))),
    # Look-alikes (not labelled).
    "POLICY": (None, lambda r: f"P{r.randint(2019, 2025)}{r.randint(10**9, 10**10 - 1)}"),
    "POLICY_DIGITS": (None, lambda r: f"{r.choice('3456789')}{r.randint(10**15, 10**16 - 1)}"),
    "PHONE_SHAPED": (None, lambda r: pf.mobile(r)),
    "CLAIM": (
        None,
        lambda r: f"CLM-{r.randint(2019, 2025)}{r.randint(1, 12):02d}-{r.randint(1, 99999):05d}",
    ),
    "CASE": (
        None,
        lambda r: f"{pf.birth_date(r, first=2019, last=2025):%Y%m%d}{r.randint(0, 999999):06d}",
    ),
    "ARTICLE": (None, lambda r: str(r.randint(1, 200))),
    "DATE": (
        None,
        lambda r: f"{r.randint(2000, 2025)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    ),
    "DATE8": (
        None,
        lambda r: f"{r.randint(2000, 2025)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}",
    ),
    "AMOUNT": (None, lambda r: f"{r.randint(1, 999)},{r.randint(0, 999):03d}"),
    "BIG_AMOUNT": (None, lambda r: str(r.randint(10**10, 10**11))),
    "VERSION": (None, lambda r: f"{r.randint(1, 12)}.{r.randint(0, 20)}.{r.randint(0, 99)}"),
    "SECTION": (
        None,
        lambda r: f"{r.randint(1, 9)}.{r.randint(1, 9)}.{r.randint(1, 9)}.{r.randint(1, 9)}",
    ),
    "ISO": (None, lambda r: r.choice(("ISO 9001:2015", "ISO/IEC 27001:2022", "GB/T 22239-2019"))),
    "BAD_ID": (None, pf.bad_check_id),
    "BAD_CARD": (None, lambda r: pf.bad_luhn_card(r, length=r.choice((16, 19)))),
    "FULLWIDTH": (
        None,
        lambda r: pf.mobile(r).translate(str.maketrans("0123456789", "０１２３４５６７８９")),
    ),
    "HOTLINE": (None, lambda r: r.choice(("95518", "95519", "400-820-8888", "4008-111-111"))),
    "VIN": (None, lambda r: f"LSV{r.choice('ABCD')}{r.randint(10**12, 10**13 - 1)}"),
}

ZH_TEMPLATES = [
    "被保险人{NAME}，身份证号码{ID}，于{DATE}因意外住院，申请理赔。",
    "投保人{NAME}的联系电话为{MOBILE}，保单号{POLICY}，请回访确认。",
    "请将理赔款转入被保险人本人银行卡{CARD}，户名须与保单一致。",
    "客户通过邮箱{EMAIL}提交了材料，案件号{CLAIM}已受理。",
    "系统日志显示，客户于{DATE}从IP {IP} 登录并修改了联系方式。",
    "出境旅行险需提供护照号{PASSPORT}及签证页复印件。",
    "根据《保险法》第{ARTICLE}条，保险人应当在{ARTICLE}日内作出核定。",
    "保单号：{PHONE_SHAPED}，保险期间自{DATE}起至{DATE}止。",
    "订单号{PHONE_SHAPED}已支付，保费合计{AMOUNT}元。",
    "本合同依据第{ARTICLE}条第{ARTICLE}款订立，保险金额为{AMOUNT}元。",
    "理赔申请人{NAME}（手机{MOBILE}，证件号{ID}）对核定结果有异议。",
    "报案号{CASE}对应的赔案已结案，赔款{AMOUNT}元已支付。",
    "请拨打客服热线{HOTLINE}或公司座机{LANDLINE}咨询。",
    "被保险人的旧身份证号{ID}已失效，请更新为新证件信息。",
    "业务员{NAME}的工号为{CASE}，办公电话{LANDLINE}。",
    "编号{BAD_ID}的档案已归档，流水号{BAD_CARD}。",
    "系统升级到版本{VERSION}后，第{SECTION}节的规则生效。",
    "本公司已通过{ISO}认证，相关文件编号{POLICY}。",
    "保单{POLICY_DIGITS}的被保险人为{NAME}，受益人为其配偶。",
    "请核对：收款账户{CARD}，开户人{NAME}，预留手机{MOBILE}。",
    "全角号码{FULLWIDTH}不属于本次检查范围，日期{DATE8}亦然。",
    "保单号P{DATE8}001的车架号为{VIN}，发动机已更换。",
    "客户反映其邮箱{EMAIL}收不到电子保单，已转技术部处理。",
    "投诉人{NAME}称，客服{MOBILE}多次来电推销，要求停止骚扰。",
    "若对理赔结果有疑问，可致电{LANDLINE}，或发送邮件至{EMAIL}。",
    "保险期间内累计赔付不超过{AMOUNT}元，免赔额为{AMOUNT}元。",
    "服务器{IP}上的理赔影像已备份，备份时间{DATE}。",
    "护照号码{PASSPORT}的被保险人在境外就医，费用{AMOUNT}元。",
    "本条款第{ARTICLE}条所称意外伤害，是指外来的、突发的、非本意的事件。",
    "被保险人{NAME}于{DATE}变更手机号为{MOBILE}，原号码停用。",
    "合同编号{CASE}，签约日期{DATE8}，总金额{BIG_AMOUNT}元。",
    "理赔款已汇入尾号{ARTICLE}的账户，请注意查收。",
    "身份证{ID}与银行卡{CARD}均为被保险人本人所有。",
    "客户{NAME}留下的联系方式：{MOBILE}、{EMAIL}。",
    "该产品的备案编号为{CASE}，条款版本{VERSION}。",
    "被保险人于{DATE}在医院就诊，住院号{CASE}，费用清单见附件。",
    # Harder: no keyword, a number labelled by an earlier keyword, business-card style, lists.
    "保单号{POLICY} 投保人{NAME} {MOBILE}",
    "联系人：{NAME}，Tel.{LANDLINE}，E-mail：{EMAIL}",
    "备用号码：{MOBILE}/{MOBILE}",
    "{NAME} {MOBILE} {ID}",
    "会员号{PHONE_SHAPED}积分已到账，保单号{POLICY_DIGITS}。",
    "理赔员{OTHER_NAME}已联系客户，核赔意见见附件。",
    "本次升级涉及{IP}等{ARTICLE}台服务器，版本{VERSION}。",
    "请于{DATE}前将{AMOUNT}元保费转入公司账户，备注保单号{PHONE_SHAPED}。",
    "批单号{CASE}：被保险人证件号码由{BAD_ID}更正为{ID}。",
    "金额合计人民币{BIG_AMOUNT}元，大写另计。",
]
EN_TEMPLATES = [
    "The policyholder {EN_NAME} (ID number {ID}) filed a claim on {DATE}.",
    "Please call the claimant at {MOBILE} to confirm the accident details.",
    "The refund will be paid to card {CARD} within {ARTICLE} working days.",
    "Send the medical receipts to {EMAIL} and quote claim {CLAIM}.",
    "Login from IP address {IP} was flagged by the fraud team on {DATE}.",
    "For travel cover we need passport number {PASSPORT} and the visa page.",
    "Under Article {ARTICLE} of the Insurance Law the insurer must decide within {ARTICLE} days.",
    "Policy No. {PHONE_SHAPED} was renewed on {DATE} for a premium of {AMOUNT} yuan.",
    "Order number {PHONE_SHAPED} has been paid; invoice date {DATE8}.",
    "Our office line is {LANDLINE}; the hotline {HOTLINE} is open 24 hours.",
    "Claim number {CASE} was closed after paying {AMOUNT} USD.",
    "Upgrade to version {VERSION} and read section {SECTION} of the handbook.",
    "The insurer is certified to {ISO}; certificate {POLICY}.",
    "Agent {EN_NAME} can be reached at {MOBILE} or {EMAIL}.",
    "Reference {BAD_ID} and serial {BAD_CARD} belong to the archive batch.",
    "The beneficiary's account {CARD} was verified by {EN_NAME}.",
    "Total benefits are capped at {AMOUNT} USD with a deductible of {AMOUNT} USD.",
    "Backups of the claim images on server {IP} completed on {DATE}.",
    "The customer {EN_NAME} asked us to stop calling {MOBILE}.",
    "Policy {POLICY} covers the vehicle with VIN {VIN}.",
    "Contact the claims desk on {LANDLINE} or write to {EMAIL}.",
    "The insured's old ID card {ID} has expired.",
    "Section {ARTICLE} defines an accident as a sudden, external and unintended event.",
    "Invoice total {BIG_AMOUNT} yuan, booking reference {CASE}.",
    "Contact: {EN_NAME}, Tel.{MOBILE}, e-mail {EMAIL}",
    "Adjuster {OTHER_NAME} will call the insured tomorrow.",
    "Policy number is {PHONE_SHAPED}; the insured can be reached on {MOBILE}.",
    "Claim {CLAIM}: card {BAD_CARD} was rejected, please resend card {CARD}.",
    "See step {SECTION} in release {VERSION} before contacting {EMAIL}.",
]


# Written by hand after the detector was built and not tuned on afterwards: (lang, text, the
# personal data in order of appearance as (type, value)). Values are synthetic
# (pii_factory with seed 99).
HANDWRITTEN: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "zh",
        "【理赔回执】尊敬的客户，您的赔案（赔案号：LP20240315000087）已受理，如有疑问请致电："
        "0571-8765 4321 或 186 2233 4455。",
        [("landline", "0571-8765 4321"), ("mobile", "186 2233 4455")],
    ),
    (
        "zh",
        "投保人信息：姓名 王芳；证件类型 居民身份证；证件号码 420103198603302040；"
        "联系地址 杭州市西湖区文三路 90 号。",
        [("name", "王芳"), ("id_number", "420103198603302040")],
    ),
    (
        "zh",
        "请将退费打入工行卡 6217 0042 2623 8572（开户行：工商银行杭州分行）。",
        [("bank_card", "6217 0042 2623 8572")],
    ),
    (
        "zh",
        "保单号 PA3301 2024 0000 1234 的保费为 3,650.00 元，缴费年限 20 年，"
        "首期扣款日 2024年3月15日。",
        [],
    ),
    (
        "zh",
        "客户于2024-03-15 10:22:31 从 IP 198.51.100.23 登录 App（版本 5.12.0），"
        "修改了绑定手机号为 13706541234。",
        [("ip", "198.51.100.23"), ("mobile", "13706541234")],
    ),
    ("zh", "《健康保险管理办法》第二十二条、第 45 条规定，等待期不得超过 180 日。", []),
    (
        "zh",
        "紧急联系人：李娜（女儿），电话 +86 139-1234-5678；备用邮箱 lina.family@example.net。",
        [("name", "李娜"), ("mobile", "+86 139-1234-5678"), ("email", "lina.family@example.net")],
    ),
    ("zh", "发票代码 033002100111，发票号码 12345678，开票金额 ¥1,280.00。", []),
    (
        "zh",
        "出险人持护照 EC1234567 入境，其旧护照号为 G23456781。",
        [("passport", "EC1234567"), ("passport", "G23456781")],
    ),
    (
        "zh",
        "身份证 11010119771017390X 的客户已完成实名认证，老身份证号 310104840514960 同步注销。",
        [("id_number", "11010119771017390X"), ("id_number", "310104840514960")],
    ),
    ("zh", "统一社会信用代码：91330106MA2H0XXX1K；组织机构代码 12345678-9。", []),
    (
        "zh",
        "咨询热线 95598 / 400-888-6666（7×24 小时），传真 021-64001234。",
        [("landline", "021-64001234")],
    ),
    ("zh", "退款账户：5187 1025 7029 2961 116", [("bank_card", "5187 1025 7029 2961 116")]),
    ("zh", "第 3.2.1.4 条款所述情形下，系统版本号应不低于 2.10.3.1。", []),
    ("zh", "编号为 330106197012261206 的档案（校验位有误）已退回。", []),
    ("zh", "订单 6217001840905369 已退款。", []),
    (
        "en",
        "Dear Mr. John Smith, your claim CLM-2024-000871 has been approved; the payout of "
        "USD 12,500 will reach card ending 8572 within 5 business days.",
        [("name", "John Smith")],
    ),
    (
        "en",
        "If you have questions, call our Shanghai office at (021) 6400-1234 ext. 208 or email "
        "claims@example.com.",
        [("landline", "(021) 6400-1234 ext. 208"), ("email", "claims@example.com")],
    ),
    (
        "en",
        "The insured, Emily Chen (passport E87654321), was hospitalised in Bangkok on 2024-02-11.",
        [("name", "Emily Chen"), ("passport", "E87654321")],
    ),
    (
        "en",
        "Server logs show repeated logins from 203.0.113.45 and 2001:db8:85a3::8a2e:370:7334.",
        [("ip", "203.0.113.45"), ("ip", "2001:db8:85a3::8a2e:370:7334")],
    ),
    (
        "en",
        "Please refer to Section 4.1.2.3 and Article 105 of the policy wording (version 3.0.1).",
        [],
    ),
    (
        "en",
        "Mobile: 138-1234-5678 | Email: zhang.wei@example.org | ID: 440305200310122350",
        [
            ("mobile", "138-1234-5678"),
            ("email", "zhang.wei@example.org"),
            ("id_number", "440305200310122350"),
        ],
    ),
    ("en", "Policy number 4041196665812056736 (invalid card-like) was issued on 20240301.", []),
    (
        "en",
        "Wire the refund to account 4041192863037485, holder Zhang Wei.",
        [("bank_card", "4041192863037485"), ("name", "Zhang Wei")],
    ),
    (
        "en",
        "Reach me on +86 186 2233 4455 or WeChat ID zw_2024.",
        [("mobile", "+86 186 2233 4455")],
    ),
]


def handwritten_rows() -> list[dict[str, object]]:
    """HANDWRITTEN with offsets (each value looked up after the previous one)."""
    rows = []
    for i, (lang, text, values) in enumerate(HANDWRITTEN):
        spans, pos = [], 0
        for kind, value in values:
            start = text.index(value, pos)
            spans.append({"type": kind, "start": start, "end": start + len(value)})
            pos = start + len(value)
        rows.append({"id": f"hand-{lang}-{i:02d}", "lang": lang, "text": text, "spans": spans})
    return rows


def fill(template: str, r: Rng) -> tuple[str, list[dict[str, object]]]:
    """The sentence and its labelled spans."""
    out: list[str] = []
    spans: list[dict[str, object]] = []
    pos = 0
    rest = template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        slot, _, rest = tail.partition("}")
        out.append(head)
        pos += len(head)
        label, make = SLOTS[slot]
        value = make(r)
        if label is not None:
            spans.append({"type": label, "start": pos, "end": pos + len(value)})
        out.append(value)
        pos += len(value)
    out.append(rest)
    return "".join(out), spans


def make_rows(n: int, seed: int) -> list[dict[str, object]]:
    """``n`` rows, about two thirds Chinese; one or two sentences each."""
    r = random.Random(seed)
    rows = []
    for i in range(n):
        lang = "zh" if r.random() < 0.65 else "en"
        templates = ZH_TEMPLATES if lang == "zh" else EN_TEMPLATES
        text, spans = "", []
        for _ in range(r.choice((1, 1, 2))):
            sentence, found = fill(r.choice(templates), r)
            joiner = "" if lang == "zh" or not text else " "
            offset = len(text) + len(joiner)
            spans += [{**s, "start": s["start"] + offset, "end": s["end"] + offset} for s in found]
            text += joiner + sentence
        rows.append({"id": f"{lang}-{i:04d}", "lang": lang, "text": text, "spans": spans})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=480, help="templated rows (plus handwritten)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = make_rows(args.rows, args.seed) + handwritten_rows()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    labelled = sum(len(row["spans"]) for row in rows)  # type: ignore[arg-type]
    print(f"wrote {len(rows)} rows, {labelled} labelled spans -> {args.out}")


if __name__ == "__main__":
    main()
