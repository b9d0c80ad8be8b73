"""Build ``quality_small.jsonl``: hand-written labelled pairs over the project's example texts.

Every instruction and answer below was written for this file (not copied from any other set);
the source texts are the redistributable ``examples/slices.jsonl`` (PRC Insurance Law, the
compulsory motor insurance regulation, the Civil Code's chapter on breach of contract, the first
judicial interpretation of the Insurance Law, the US Constitution). ``source_text`` is what a
teacher would have seen: the law's title, then the target article with its neighbours (zh) or the
target section with the one before it (en). Run from the repository root::

    python benchmarks/data/build_quality_small.py
"""

# ruff: noqa: E501  (the pairs are prose, one literal per field)

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = HERE / "quality_small.jsonl"

ZH_LAW = "insurance-law"
ZH_MOTOR = "compulsory-motor-insurance"
ZH_CIVIL = "civil-code-breach-of-contract"
ZH_INTERP = "insurance-law-interpretation-1"
EN_ART1 = "us-constitution-article-1"
EN_ART3 = "us-constitution-article-3"
EN_ART5 = "us-constitution-article-5"
EN_AM5 = "us-constitution-amendment-5"

# fmt: off
# (defect, slice, article, instruction, output, evidence)
ZH: list[tuple[str, str, str, str, str, list[str]]] = [
    # --- good: faithful answers in our own words
    ("good", ZH_LAW, "第十六条",
     "《保险法》规定，投保人违反如实告知义务时，保险人的合同解除权什么时候消灭？",
     "依照《保险法》第十六条，保险人的解除权自其知道有解除事由之日起超过三十日不行使即消灭；"
     "并且合同成立满二年后，保险人不得再解除合同，发生保险事故的，仍应承担赔偿或者给付保险金的责任。",
     ["自保险人知道有解除事由之日起，超过三十日不行使而消灭", "自合同成立之日起超过二年的，保险人不得解除合同"]),
    ("good", ZH_LAW, "第二十三条",
     "按照《保险法》第二十三条，保险人收到理赔请求后，核定和赔付各有什么时限？",
     "保险人应当及时核定；情形复杂的，应在三十日内作出核定，合同另有约定的除外。核定结果要通知被保险人"
     "或受益人，属于保险责任的，在与其达成赔偿或者给付协议后十日内履行赔付义务。",
     ["情形复杂的，应当在三十日内作出核定", "达成赔偿或者给付保险金的协议后十日内"]),
    ("good", ZH_LAW, "第二十六条",
     "人寿保险和其他保险的索赔诉讼时效分别是多长？",
     "《保险法》第二十六条规定：人寿保险以外的其他保险，被保险人或受益人请求赔偿或给付保险金的诉讼时效"
     "为二年；人寿保险的诉讼时效为五年。两者都从知道或者应当知道保险事故发生之日起计算。",
     ["诉讼时效期间为二年", "请求给付保险金的诉讼时效期间为五年"]),
    ("good", ZH_LAW, "第四十四条",
     "《保险法》中的自杀免责期是怎样规定的？",
     "根据《保险法》第四十四条，以被保险人死亡为给付条件的合同，自合同成立或者效力恢复之日起二年内被保险人"
     "自杀的，保险人不承担给付保险金的责任，但被保险人自杀时为无民事行为能力人的除外；保险人不给付时，"
     "应当按照合同约定退还保险单的现金价值。",
     ["自合同成立或者合同效力恢复之日起二年内，被保险人自杀的，保险人不承担给付保险金的责任"]),
    ("good", ZH_LAW, "第三十六条",
     "分期交费的人身保险，投保人逾期不交当期保险费会有什么后果？",
     "《保险法》第三十六条规定，投保人支付首期保险费后，除合同另有约定外，自保险人催告之日起超过三十日未支付"
     "当期保险费，或者超过约定的期限六十日未支付的，合同效力中止，或者由保险人按照约定减少保险金额。"
     "在这段期限内发生保险事故的，保险人仍应给付保险金，但可以扣减欠交的保险费。",
     ["自保险人催告之日起超过三十日未支付当期保险费，或者超过约定的期限六十日未支付当期保险费的，合同效力中止"]),
    ("good", ZH_LAW, "第九十七条",
     "保险公司应当提取多少保证金？保证金能随意动用吗？",
     "依照《保险法》第九十七条，保险公司应当按照注册资本总额的百分之二十提取保证金，存入国务院保险监督管理机构"
     "指定的银行；除公司清算时用于清偿债务外，不得动用。",
     ["保险公司应当按照其注册资本总额的百分之二十提取保证金"]),
    ("good", ZH_MOTOR, "第二十条",
     "交强险的保险期间一般是多久？哪些情况可以投保短期交强险？",
     "《机动车交通事故责任强制保险条例》第二十条规定，交强险的保险期间为1年。境外机动车临时入境、"
     "机动车临时上道路行驶、机动车距规定的报废期限不足1年，以及国务院保险监督管理机构规定的其他情形，"
     "投保人可以投保短期交强险。",
     ["机动车交通事故责任强制保险的保险期间为1年", "机动车距规定的报废期限不足1年的"]),
    ("good", ZH_MOTOR, "第二十九条",
     "交强险理赔中，保险公司多长时间内要作出核定并赔付？",
     "按照《机动车交通事故责任强制保险条例》第二十九条，保险公司应当自收到被保险人提供的证明和资料之日起5日内，"
     "对是否属于保险责任作出核定并通知被保险人；不属于保险责任的，要书面说明理由；属于保险责任的，"
     "在达成赔偿保险金的协议后10日内赔偿。",
     ["自收到被保险人提供的证明和资料之日起5日内", "在与被保险人达成赔偿保险金的协议后10日内，赔偿保险金"]),
    ("good", ZH_CIVIL, "第五百八十六条",
     "《民法典》对定金的数额有什么限制？",
     "《民法典》第五百八十六条规定，定金的数额由当事人约定，但不得超过主合同标的额的百分之二十，"
     "超过的部分不产生定金的效力；实际交付的定金多于或者少于约定数额的，视为变更约定的定金数额。"
     "定金合同自实际交付定金时成立。",
     ["不得超过主合同标的额的百分之二十，超过部分不产生定金的效力"]),
    ("good", ZH_CIVIL, "第五百九十四条",
     "国际货物买卖合同发生争议，提起诉讼的时效期间是多久？",
     "依照《民法典》第五百九十四条，因国际货物买卖合同和技术进出口合同争议提起诉讼或者申请仲裁的，"
     "时效期间为四年。",
     ["提起诉讼或者申请仲裁的时效期间为四年"]),
    ("good", ZH_CIVIL, "第五百九十一条",
     "《民法典》规定的防止损失扩大的规则是什么？",
     "根据《民法典》第五百九十一条，一方违约后，对方应当采取适当措施防止损失扩大；没有采取适当措施致使损失"
     "扩大的，不得就扩大的损失请求赔偿。为防止损失扩大而支出的合理费用，由违约方负担。",
     ["没有采取适当措施致使损失扩大的，不得就扩大的损失请求赔偿"]),
    ("good", ZH_LAW, "第三十条",
     "为什么《保险法》要求对格式条款作有利于被保险人的解释？",
     "格式条款由保险人一方拟定，投保人通常只能选择接受。所以《保险法》第三十条规定，对格式条款有争议的，"
     "先按通常理解解释；有两种以上解释的，人民法院或者仲裁机构应当作出有利于被保险人和受益人的解释。",
     ["应当按照通常理解予以解释", "应当作出有利于被保险人和受益人的解释"]),
    ("good", ZH_INTERP, "第五条",
     "最高人民法院关于适用《保险法》若干问题的解释（一）对保险法施行前成立的合同的有关期间如何计算？",
     "依照该解释第五条，保险法施行前成立的保险合同，在该条列举的情形下适用保险法规定的三十日、二年等期间的，"
     "期间自2009年10月1日起计算。",
     ["下列情形下的期间自2009年10月1日起计算"]),
    # --- good_calc: correct worked answers whose result numbers are not in the source
    ("good_calc", ZH_LAW, "第十六条",
     "保险人于2023年3月1日得知投保人故意未如实告知，依照《保险法》第十六条，保险人最晚何时必须行使解除权？",
     "第十六条规定，解除权自保险人知道有解除事由之日起超过三十日不行使而消灭。从2023年3月1日起算30日，"
     "保险人最晚应在2023年3月31日前行使解除权，否则该权利消灭。",
     ["超过三十日不行使而消灭"]),
    ("good_calc", ZH_LAW, "第九十七条",
     "某保险公司注册资本为5亿元，依照《保险法》第九十七条应提取多少保证金？",
     "按照第九十七条，保证金为注册资本总额的百分之二十，即5亿元×20%＝1亿元，存入指定银行，清算前不得动用。",
     ["按照其注册资本总额的百分之二十提取保证金"]),
    ("good_calc", ZH_MOTOR, "第三十八条",
     "某车主未投保交强险被查，按规定投保最低责任限额应缴纳的保险费为950元。依照《机动车交通事故责任强制保险条例》"
     "第三十八条，应处多少罚款？",
     "第三十八条规定，对未按规定投保交强险的，处依照规定投保最低责任限额应缴纳的保险费的2倍罚款，"
     "即950元×2＝1900元；同时由公安机关交通管理部门扣留机动车，补办保险后应当及时退还。",
     ["处依照规定投保最低责任限额应缴纳的保险费的2倍罚款"]),
    ("good_calc", ZH_MOTOR, "第三十六条",
     "某公司非法从事交强险业务，违法所得为30万元。依照《机动车交通事故责任强制保险条例》第三十六条，罚款范围是多少？",
     "违法所得20万元以上的，没收违法所得，并处违法所得1倍以上5倍以下罚款。30万元已超过20万元，"
     "因此罚款在30万元至150万元之间。",
     ["违法所得20万元以上的，并处违法所得1倍以上5倍以下罚款"]),
    ("good_calc", ZH_MOTOR, "第二十九条",
     "保险公司于6月3日收到被保险人提供的全部证明和资料，6月10日与被保险人达成赔偿协议。依照《机动车交通事故"
     "责任强制保险条例》第二十九条，核定和赔付的最后期限分别是哪天？",
     "第二十九条要求保险公司自收到证明和资料之日起5日内作出核定，即最晚6月8日；达成赔偿协议后10日内"
     "赔偿保险金，即最晚6月20日。",
     ["自收到被保险人提供的证明和资料之日起5日内"]),
    ("good_calc", ZH_CIVIL, "第五百八十六条",
     "甲乙签订买卖合同，标的额为80万元，约定定金20万元。依照《民法典》第五百八十六条，定金条款是否全部有效？",
     "不全部有效。定金不得超过主合同标的额的百分之二十，80万元×20%＝16万元，约定的20万元中超出的4万元"
     "不产生定金的效力。",
     ["不得超过主合同标的额的百分之二十"]),
    ("good_calc", ZH_CIVIL, "第五百八十七条",
     "买方向卖方交付定金5万元，卖方违约致使合同目的不能实现。依照《民法典》第五百八十七条，买方能要求返还多少？",
     "收受定金的一方不履行债务致使不能实现合同目的的，应当双倍返还定金，所以卖方应返还5万元×2＝10万元。",
     ["收受定金的一方不履行债务或者履行债务不符合约定，致使不能实现合同目的的，应当双倍返还定金"]),
    ("good_calc", ZH_LAW, "第三十六条",
     "王某的保险费分期支付，保险人于2024年1月5日催告其支付当期保险费，合同没有其他约定。依照《保险法》"
     "第三十六条，王某拖到哪天仍不交会导致合同效力中止？",
     "第三十六条规定，自保险人催告之日起超过三十日未支付当期保险费的，合同效力中止。从1月5日起算30日为"
     "2月4日，超过这一天仍未支付，合同效力中止。",
     ["自保险人催告之日起超过三十日未支付当期保险费"]),
    ("good_calc", ZH_LAW, "第一百零二条",
     "某财产保险公司实有资本金3亿元，公积金1亿元。依照《保险法》第一百零二条，当年自留保险费最多是多少？",
     "当年自留保险费不得超过实有资本金加公积金总和的四倍：(3亿元＋1亿元)×4＝16亿元。",
     ["不得超过其实有资本金加公积金总和的四倍"]),
    ("good_calc", ZH_LAW, "第一百零三条",
     "某保险公司实有资本金加公积金总和为8亿元，依照《保险法》第一百零三条，对每一危险单位承担的责任上限是多少？",
     "上限为总和的百分之十，即8000万元；超过的部分应当办理再保险。",
     ["不得超过其实有资本金加公积金总和的百分之十"]),
    # --- good_case: applications in plain words
    ("good_case", ZH_LAW, "第三十四条",
     "李某瞒着妻子为她投保了一份以死亡为给付条件的寿险，妻子对保险金额并不知情。依照《保险法》第三十四条，"
     "这份合同有效吗？",
     "无效。这类合同必须经被保险人同意并认可保险金额，李某的妻子既不知道投保，也没有认可保额，所以合同不生效。"
     "如果是父母给未成年子女投保，则不受这个限制。",
     ["未经被保险人同意并认可保险金额的，合同无效"]),
    ("good_case", ZH_LAW, "第四十六条",
     "张某投保了意外伤害保险，被他人开车撞伤后已从保险公司领到保险金。依照《保险法》第四十六条，"
     "保险公司能否向肇事司机追偿？张某还能向司机索赔吗？",
     "保险公司不能追偿，人身保险的保险人给付保险金后不享有向第三者追偿的权利；张某仍然可以向肇事司机请求赔偿，"
     "两者并不冲突。",
     ["不享有向第三者追偿的权利，但被保险人或者受益人仍有权向第三者请求赔偿"]),
    ("good_case", ZH_LAW, "第四十九条",
     "刘某把投保了财产险的货车卖给陈某，双方都没有通知保险公司。后来货车改运危险品，风险大增并出了事故。"
     "依照《保险法》第四十九条，保险公司要赔吗？",
     "可以不赔。标的转让后受让人承继被保险人的权利义务，但被保险人或受让人应当及时通知保险人。"
     "他们没有通知，而事故正是转让后危险程度显著增加造成的，保险人不承担赔偿保险金的责任。",
     ["因转让导致保险标的危险程度显著增加而发生的保险事故，保险人不承担赔偿保险金的责任"]),
    ("good_case", ZH_LAW, "第六十一条",
     "赵某的汽车被人撞坏，保险公司赔付前，赵某自己跟对方签了协议，免除了对方全部责任。依照《保险法》第六十一条，"
     "保险公司还要赔赵某吗？",
     "不用赔。赵某在保险公司赔偿之前就放弃了对第三者的索赔权，保险公司因此无法代位求偿，"
     "按规定不承担赔偿保险金的责任。",
     ["被保险人放弃对第三者请求赔偿的权利的，保险人不承担赔偿保险金的责任"]),
    ("good_case", ZH_MOTOR, "第二十二条",
     "司机醉酒驾车撞伤行人，行人送医急需抢救费。依照《机动车交通事故责任强制保险条例》第二十二条，保险公司要不要管？",
     "要管，但只是垫付。醉酒驾驶属于该条规定的情形，保险公司在交强险责任限额范围内垫付抢救费用，"
     "之后有权向醉酒司机追偿；至于行人的财产损失，保险公司不承担赔偿责任。",
     ["保险公司在机动车交通事故责任强制保险责任限额范围内垫付抢救费用，并有权向致害人追偿"]),
    ("good_case", ZH_MOTOR, "第二十四条",
     "肇事司机撞人后逃逸，一直没找到，伤者的抢救费谁来出？请依据《机动车交通事故责任强制保险条例》第二十四条回答。",
     "由道路交通事故社会救助基金先行垫付部分或者全部抢救费用；以后找到肇事者，救助基金管理机构有权向他追偿。",
     ["由救助基金先行垫付，救助基金管理机构有权向道路交通事故责任人追偿"]),
    ("good_case", ZH_CIVIL, "第五百九十条",
     "某厂因突发洪水停产，无法按期交货，但一直没有告诉买方，也没有提供任何证明。依照《民法典》第五百九十条，"
     "厂方能否完全免责？",
     "不一定能。洪水属于不可抗力，可以根据影响部分或者全部免除责任；但厂方应当及时通知买方，并在合理期限内"
     "提供证明。它既没通知也没提供证明，由此给买方扩大的损失难以免责。",
     ["应当及时通知对方，以减轻可能给对方造成的损失，并应当在合理期限内提供证明"]),
    ("good_case", ZH_CIVIL, "第五百八十四条",
     "装修公司拖延工期，业主因此多租了两个月房子，花了1万元房租。依照《民法典》第五百八十四条，业主可以要求赔偿吗？",
     "可以。违约造成对方损失的，赔偿额应当相当于因违约造成的损失，多付的1万元房租属于这种损失；"
     "但赔偿不能超过装修公司订立合同时预见到或者应当预见到的损失。",
     ["损失赔偿额应当相当于因违约所造成的损失"]),
    ("good_case", ZH_CIVIL, "第五百八十八条",
     "合同中既约定了违约金，又约定了定金，一方违约后，守约方能不能两个都要？依照《民法典》第五百八十八条回答。",
     "不能同时主张。守约方可以选择适用违约金条款或者定金条款；如果定金不足以弥补损失，"
     "还可以请求赔偿超过定金数额的那部分损失。",
     ["对方可以选择适用违约金或者定金条款"]),
    ("good_case", ZH_INTERP, "第三条",
     "某保险合同在2008年订立，2010年发生保险事故并申请理赔。依照最高人民法院关于适用《保险法》若干问题的解释（一）"
     "第三条，理赔适用哪部法律？",
     "适用修订后的保险法。合同虽然成立于保险法施行前，但保险事故和理赔发生在保险法施行后，"
     "按照第三条应当适用保险法的规定。",
     ["发生于保险法施行后的，适用保险法的规定"]),
    # --- number_swapped: one quantity changed
    ("number_swapped", ZH_LAW, "第二十四条",
     "保险人核定不属于保险责任后，应在多长时间内发出拒赔通知？",
     "《保险法》第二十四条规定，保险人作出核定后，对不属于保险责任的，应当自作出核定之日起五日内向被保险人"
     "或者受益人发出拒绝赔偿或者拒绝给付保险金通知书，并说明理由。", []),
    ("number_swapped", ZH_LAW, "第二十五条",
     "赔偿数额一时不能确定时，保险人应当怎么做？",
     "依照《保险法》第二十五条，保险人自收到赔偿请求和有关证明、资料之日起九十日内，对赔偿数额不能确定的，"
     "应当根据已有证明和资料可以确定的数额先予支付，最终确定数额后再支付差额。", []),
    ("number_swapped", ZH_LAW, "第四十七条",
     "投保人解除人身保险合同后，保险人多久要退还现金价值？",
     "根据《保险法》第四十七条，投保人解除合同的，保险人应当自收到解除合同通知之日起十五日内，"
     "按照合同约定退还保险单的现金价值。", []),
    ("number_swapped", ZH_LAW, "第六十九条",
     "设立保险公司的注册资本最低是多少？",
     "《保险法》第六十九条规定，设立保险公司，其注册资本的最低限额为人民币五亿元，且必须为实缴货币资本。", []),
    ("number_swapped", ZH_LAW, "第七十一条",
     "监管机构审查保险公司设立申请有时限吗？",
     "有。按照《保险法》第七十一条，国务院保险监督管理机构应当自受理之日起三个月内作出批准或者不批准筹建的决定，"
     "并书面通知申请人；不批准的，应当书面说明理由。", []),
    ("number_swapped", ZH_LAW, "第一百零三条",
     "保险公司对每一危险单位承担的责任有什么上限？",
     "《保险法》第一百零三条规定，保险公司对每一危险单位所承担的责任，不得超过其实有资本金加公积金总和的"
     "百分之十五；超过的部分应当办理再保险。", []),
    ("number_swapped", ZH_MOTOR, "第十四条",
     "交强险投保人收到解除合同的书面通知后，要在多长时间内履行如实告知义务？",
     "依照《机动车交通事故责任强制保险条例》第十四条，投保人应当自收到通知之日起10日内履行如实告知义务；"
     "在此期限内履行的，保险公司不得解除合同。", []),
    ("number_swapped", ZH_MOTOR, "第二十八条",
     "被保险人申请交强险赔偿后，保险公司应当多快告知需要提交的材料？",
     "《机动车交通事故责任强制保险条例》第二十八条规定，保险公司应当自收到赔偿申请之日起3日内，书面告知"
     "被保险人需要提供的与赔偿有关的证明和资料。", []),
    ("number_swapped", ZH_MOTOR, "第三十九条",
     "机动车上道路行驶未放置保险标志会受到什么处罚？",
     "根据《机动车交通事故责任强制保险条例》第三十九条，公安机关交通管理部门应当扣留机动车，通知当事人提供"
     "保险标志或者补办手续，可以处警告或者50元以上500元以下罚款。", []),
    ("number_swapped", ZH_CIVIL, "第五百九十四条",
     "技术进出口合同争议申请仲裁的时效期间是多久？",
     "《民法典》第五百九十四条规定，因国际货物买卖合同和技术进出口合同争议提起诉讼或者申请仲裁的时效期间为三年。",
     []),
    ("number_swapped", ZH_LAW, "第八十七条",
     "保险公司的账簿和原始凭证要保存多久？",
     "依照《保险法》第八十七条，保管期限自保险合同终止之日起计算，保险期间在一年以下的不得少于三年，"
     "保险期间超过一年的不得少于十年。", []),
    ("number_swapped", ZH_LAW, "第一百四十六条",
     "保险公司被接管的期限最长可以延长到多久？",
     "《保险法》第一百四十六条规定，接管期限届满，国务院保险监督管理机构可以决定延长接管期限，"
     "但接管期限最长不得超过三年。", []),
    # --- wrong_article: the answer cites an article the source does not have
    ("wrong_article", ZH_LAW, "第二十三条",
     "《保险法》第二十三条对核定期限有什么规定？",
     "根据《保险法》第四十三条，保险人收到赔偿或者给付保险金的请求后，应当及时作出核定；情形复杂的，"
     "应当在三十日内作出核定，但合同另有约定的除外。", []),
    ("wrong_article", ZH_LAW, "第九十七条",
     "《保险法》关于保证金的规定是哪一条？内容是什么？",
     "《保险法》第七十九条规定，保险公司应当按照其注册资本总额的百分之二十提取保证金，存入指定银行，"
     "除公司清算时用于清偿债务外，不得动用。", []),
    ("wrong_article", ZH_MOTOR, "第二十条",
     "交强险的保险期间是怎么规定的？",
     "依据《机动车交通事故责任强制保险条例》第十条，交强险的保险期间为1年，特定情形下可以投保短期交强险。", []),
    ("wrong_article", ZH_CIVIL, "第五百八十五条",
     "《民法典》如何规定违约金的调整？",
     "《民法典》第五百零五条规定，约定的违约金低于造成的损失的，人民法院或者仲裁机构可以根据当事人的请求予以增加；"
     "约定的违约金过分高于造成的损失的，可以根据当事人的请求予以适当减少。", []),
    ("wrong_article", ZH_LAW, "第五十五条",
     "约定了保险价值的财产保险，发生损失时按什么标准赔偿？",
     "按照《保险法》第六十五条的规定，投保人和保险人约定保险标的的保险价值并在合同中载明的，保险标的发生损失时，"
     "以约定的保险价值为赔偿计算标准。", []),
    ("wrong_article", ZH_LAW, "第一百三十条",
     "《保险法》第一百三十条规定了什么？",
     "《保险法》第一百一十三条规定，保险佣金只限于向保险代理人、保险经纪人支付，不得向其他人支付。", []),
    ("wrong_article", ZH_MOTOR, "第二十二条",
     "驾驶人醉酒肇事时，交强险的保险公司承担什么责任？",
     "根据条例第三十二条，驾驶人未取得驾驶资格或者醉酒的，保险公司在责任限额范围内垫付抢救费用，"
     "并有权向致害人追偿；造成受害人财产损失的，保险公司不承担赔偿责任。", []),
    ("wrong_article", ZH_INTERP, "第四条",
     "保险法施行前成立的合同，保险人在施行后以未如实告知为由解除合同，适用什么规定？",
     "依照该解释第八条，保险合同成立于保险法施行前，保险法施行后保险人以投保人未履行如实告知义务为由主张"
     "解除合同的，适用保险法的规定。", []),
    ("wrong_article", ZH_CIVIL, "第五百八十条",
     "非金钱债务在什么情况下不能请求继续履行？",
     "《民法典》第五百六十三条规定，法律上或者事实上不能履行、债务的标的不适于强制履行或者履行费用过高、"
     "债权人在合理期限内未请求履行的，对方不能请求继续履行。", []),
    ("wrong_article", ZH_LAW, "第三十九条",
     "人身保险的受益人由谁指定？",
     "《保险法》第九十三条规定，人身保险的受益人由被保险人或者投保人指定，投保人指定受益人时须经被保险人同意。",
     []),
    # --- context_dependent: the question leans on a text the student will not see
    ("context_dependent", ZH_LAW, "第十六条",
     "这段条文中，保险人解除合同的期限是怎么规定的？",
     "保险人的合同解除权自其知道有解除事由之日起超过三十日不行使而消灭；合同成立满二年后，保险人不得解除合同。",
     []),
    ("context_dependent", ZH_LAW, "第十六条",
     "依据上述规定，投保人在订立合同时负有什么告知义务？",
     "保险人就保险标的或者被保险人的有关情况提出询问的，投保人应当如实告知。", []),
    ("context_dependent", ZH_LAW, "第三十六条",
     "本合同的宽限期是多少天？",
     "投保人自保险人催告之日起超过三十日未支付当期保险费的，合同效力中止。", []),
    ("context_dependent", ZH_LAW, "第四十七条",
     "文中提到的现金价值应当在多长时间内退还？",
     "投保人解除合同的，保险人应当自收到解除合同通知之日起三十日内退还保险单的现金价值。", []),
    ("context_dependent", ZH_MOTOR, "第二十条",
     "根据以上内容，交强险的保险期间是多久？",
     "交强险的保险期间为1年，特定情形下可以投保短期交强险。", []),
    ("context_dependent", ZH_CIVIL, "第五百八十七条",
     "请结合所给材料，说明定金罚则。",
     "给付定金的一方违约致使不能实现合同目的的，无权请求返还定金；收受定金的一方违约致使不能实现合同目的的，"
     "应当双倍返还定金。", []),
    ("context_dependent", ZH_LAW, "第三十六条",
     "该条款规定的宽限期是多少天？",
     "自保险人催告之日起三十日，或者超过约定的期限六十日。", []),
    ("context_dependent", ZH_MOTOR, "第二十五条",
     "材料里说的救助基金有哪些资金来源？",
     "救助基金的来源包括按照交强险保险费的一定比例提取的资金、对未按规定投保的机动车所有人和管理人的罚款、"
     "救助基金管理机构依法追偿的资金、救助基金孳息以及其他资金。", []),
    ("context_dependent", ZH_MOTOR, "第十四条",
     "按照前述条文，保险公司能否解除交强险合同？",
     "保险公司不得解除交强险合同，但投保人对重要事项未履行如实告知义务的除外。", []),
    ("context_dependent", ZH_MOTOR, "第四十二条",
     "本条例对挂车有什么特别规定？",
     "挂车不投保交强险，发生事故时由牵引车投保的保险公司在责任限额范围内赔偿，不足部分由牵引车方和挂车方"
     "依法承担。", []),
    ("context_dependent", ZH_LAW, "第一百二十五条",
     "从这篇文章来看，个人保险代理人可以同时接受几个保险人的委托？",
     "个人保险代理人代为办理人寿保险业务时，不得同时接受两个以上保险人的委托。", []),
    # --- truncated
    ("truncated", ZH_LAW, "第十七条",
     "《保险法》对免责条款的提示和说明义务有什么要求？",
     "根据《保险法》第十七条，对保险合同中免除保险人责任的条款，保险人在订立合同时应当在投保单、保险单或者其他"
     "保险凭证上作出足以引起投保人注意的提示，并对该条款的内容以书面或者口头形式", []),
    ("truncated", ZH_LAW, "第十八条",
     "保险合同应当包括哪些事项？",
     "《保险法》第十八条规定，保险合同应当包括：\n（一）保险人的名称和住所；\n（二）投保人、被保险人的姓名或者名称、"
     "住所；\n（三）保险标的；\n（四）", []),
    ("truncated", ZH_LAW, "第二十一条",
     "投保人知道保险事故发生后有什么义务？",
     "依照《保险法》第二十一条，投保人、被保险人或者受益人知道保险事故发生后，应当及时通知保险人。故意或者"
     "因重大过失未及时通知，致使保险事故的性质、原因、", []),
    ("truncated", ZH_MOTOR, "第十二条",
     "签订交强险合同时，保险费怎么交？",
     "《机动车交通事故责任强制保险条例》第十二条规定，投保人应当一次支付全部保险费；保险公司应当向投保人签发"
     "保险单、保险标志（保险单、保险标志应当注明保险单号码、车牌号码", []),
    ("truncated", ZH_CIVIL, "第五百八十二条",
     "履行不符合约定时，受损害方可以要求对方承担哪些违约责任？",
     "按照《民法典》第五百八十二条，履行不符合约定的，应当按照当事人的约定承担违约责任。对违约责任没有约定"
     "或者约定不明确的，受损害方根据标的的性质以及损失的大小，可以合理选择请求对方承担修理、重作、更换、退货、"
     "减少价款或者报酬等", []),
    ("truncated", ZH_LAW, "第三十一条",
     "投保人对哪些人员具有保险利益？",
     "依照《保险法》第三十一条，投保人对本人，配偶、子女、父母，与其有抚养、赡养或者扶养关系的家庭其他成员、"
     "近亲属，以及与其有劳动关系的劳动者具有保险利益。除此之外，被保险人同意投保人为其订立合同的，视为投保人对"
     "被保险人具有保险利益。订立合同时，投保人对被保险人不具有保险利益的，合同", []),
    ("truncated", ZH_LAW, "第六十条",
     "什么是保险代位求偿权？",
     "《保险法》第六十条规定，因第三者对保险标的的损害而造成保险事故的，保险人自向被保险人赔偿保险金之日起，"
     "在赔偿金额范围内代位行使被保险人对第三者请求赔偿的", []),
    ("truncated", ZH_MOTOR, "第四十条",
     "使用伪造的交强险保险标志会怎样处罚？",
     "根据《机动车交通事故责任强制保险条例》第四十条，伪造、变造或者使用伪造、变造的保险标志，或者使用其他"
     "机动车的保险标志，由公安机关交通管理部门予以收缴，扣留该机动车，处200元以上2000元以下罚款；构成犯罪的，", []),
    ("truncated", ZH_CIVIL, "第五百九十二条",
     "双方都违约时如何承担责任？",
     "《民法典》第五百九十二条规定：当事人都违反合同的，应当各自承担相应的责任。当事人一方违约造成对方损失，"
     "对方对损失的发生有过错的，可以减少相应的损失赔偿额。另外，根据《民法典》", []),
    ("truncated", ZH_LAW, "第五十八条",
     "保险标的发生部分损失后，合同可以解除吗？",
     "可以。依照《保险法》第五十八条，保险标的发生部分损失的，自保险人赔偿之日起三十日内，投保人可以解除合同；"
     "除合同另有约定外，保险人也可以解除合同，但应当提前十五日通知投保人。合同解除的，保险人应当将保险标的未受"
     "损失部分的保险费，按照合同约定扣除自保险责任开始之日起至合同解除之日止应收的部分后，退还", []),
    # --- non_answer
    ("non_answer", ZH_LAW, "第二十六条",
     "财产保险的索赔诉讼时效是多久？",
     "抱歉，提供的条文中并没有涉及这一问题。", []),
    ("non_answer", ZH_LAW, "第十六条",
     "投保人没有如实告知，保险人可以怎么处理？",
     "我不太清楚具体规定，建议您咨询保险公司。", []),
    ("non_answer", ZH_MOTOR, "第二十三条",
     "交强险的责任限额是怎么确定的？",
     "对于这个问题，法律条文没有给出明确答案，需要视具体情况而定。", []),
    ("non_answer", ZH_CIVIL, "第五百八十五条",
     "违约金过高时可以请求减少吗？",
     "根据现有信息，无法判断。", []),
    ("non_answer", ZH_LAW, "第三十九条",
     "投保人为员工投保人身保险时，可以指定谁为受益人？",
     "这要看合同怎么约定，请咨询专业律师。", []),
    ("non_answer", ZH_MOTOR, "第十九条",
     "交强险到期后应当怎么续保？",
     "暂时无法回答该问题。", []),
    ("non_answer", ZH_LAW, "第四十二条",
     "被保险人死亡后，什么情况下保险金作为遗产处理？",
     "相关内容未在资料中找到。", []),
    ("non_answer", ZH_INTERP, "第六条",
     "保险法施行前已经终审的案件申请再审，适用保险法吗？",
     "因人而异，具体请咨询当地法院。", []),
    ("non_answer", ZH_LAW, "第八十二条",
     "哪些人不得担任保险公司的董事、监事和高级管理人员？",
     "我目前没有这方面的信息。", []),
    ("non_answer", ZH_CIVIL, "第五百八十九条",
     "债权人无正当理由拒绝受领，债务人可以主张什么？",
     "这一问题较为复杂，难以一概而论，请以法院的认定为准。", []),
    ("non_answer", ZH_LAW, "第五十六条",
     "什么是重复保险？",
     "很遗憾，原文没有说明这一点。", []),
    # --- misattributed: the answer restates some other provision
    ("misattributed", ZH_LAW, "第二十六条",
     "《保险法》第二十六条规定了什么？",
     "根据《保险法》第二十六条，保险标的转让的，保险标的的受让人承继被保险人的权利和义务，被保险人或者受让人"
     "应当及时通知保险人。", ["保险标的的受让人承继被保险人的权利和义务"]),
    ("misattributed", ZH_MOTOR, "第二十三条",
     "交强险的责任限额是怎样规定的？",
     "依照《机动车交通事故责任强制保险条例》第二十三条，投保人在投保时应当选择从事交强险业务的保险公司，"
     "被选择的保险公司不得拒绝或者拖延承保，监管机构应当将这些保险公司向社会公示。", []),
    ("misattributed", ZH_CIVIL, "第五百八十九条",
     "《民法典》第五百八十九条的内容是什么？",
     "《民法典》第五百八十九条规定，当事人一方明确表示或者以自己的行为表明不履行合同义务的，对方可以在履行期限"
     "届满前请求其承担违约责任。", ["对方可以在履行期限届满前请求其承担违约责任"]),
    ("misattributed", ZH_LAW, "第五十七条",
     "保险事故发生后，被保险人为减少损失支出的费用由谁承担？",
     "《保险法》第五十七条规定，保险人对人寿保险的保险费，不得用诉讼方式要求投保人支付。", []),
    ("misattributed", ZH_LAW, "第一百一十六条",
     "《保险法》第一百一十六条禁止保险公司及其工作人员从事哪些行为？",
     "根据《保险法》第一百一十六条，保险公司的董事、监事和高级管理人员，应当品行良好，熟悉与保险相关的法律、"
     "行政法规，具有履行职责所需的经营管理能力，并在任职前取得任职资格。", ["应当品行良好，熟悉与保险相关的法律、行政法规"]),
    ("misattributed", ZH_LAW, "第六十五条",
     "责任保险的被保险人给第三者造成损害时，保险人可以直接向第三者赔偿吗？",
     "依照《中华人民共和国道路交通安全法》第七十六条，机动车发生交通事故造成人身伤亡、财产损失的，由保险公司在"
     "机动车第三者责任强制保险责任限额范围内予以赔偿；不足的部分，按照过错比例分担。", []),
    ("misattributed", ZH_MOTOR, "第十二条",
     "签订交强险合同时，保险公司应当签发什么凭证？",
     "《保险法》第十三条规定，投保人提出保险要求，经保险人同意承保，保险合同成立。保险人应当及时向投保人签发"
     "保险单或者其他保险凭证。", []),
    ("misattributed", ZH_CIVIL, "第五百八十四条",
     "《民法典》第五百八十四条对损失赔偿额是怎么规定的？",
     "《民法典》第五百八十四条规定，合同生效后，当事人不得因姓名、名称的变更或者法定代表人、负责人、承办人的"
     "变动而不履行合同义务。", []),
    ("misattributed", ZH_INTERP, "第二条",
     "保险法司法解释（一）第二条讲的是什么？",
     "根据该解释第二条，保险人在合同订立时已经知道投保人未如实告知的情况的，保险人不得解除合同；发生保险事故的，"
     "保险人应当承担赔偿或者给付保险金的责任。", ["保险人在合同订立时已经知道投保人未如实告知的情况的，保险人不得解除合同"]),
    ("misattributed", ZH_LAW, "第八条",
     "《保险法》第八条的内容是什么？",
     "《保险法》第八条规定，经营有人寿保险业务的保险公司，除因分立、合并或者被依法撤销外，不得解散。", []),
    ("misattributed", ZH_LAW, "第一百六十二条",
     "保险公司违反本法第八十四条会受到什么处罚？按《保险法》第一百六十二条回答。",
     "根据《劳动合同法》第八十四条，用人单位违反本法规定，扣押劳动者居民身份证等证件的，由劳动行政部门责令限期"
     "退还劳动者本人，并依照有关法律规定给予处罚。", []),
    # --- invented_sentence: a faithful answer plus one made-up rule
    ("invented_sentence", ZH_LAW, "第十四条",
     "《保险法》第十四条规定了什么？",
     "保险合同成立后，投保人按照约定交付保险费，保险人按照约定的时间开始承担保险责任。"
     "保险人推迟承担保险责任的，应当按日向投保人支付保险费千分之一的违约金。", ["保险人按照约定的时间开始承担保险责任"]),
    ("invented_sentence", ZH_LAW, "第三十五条",
     "人身保险的保险费可以怎样支付？",
     "依照《保险法》第三十五条，投保人可以按照合同约定向保险人一次支付全部保险费或者分期支付保险费。"
     "投保人选择一次性支付的，保险人应当给予一定的费率优惠，具体比例由双方协商确定。", []),
    ("invented_sentence", ZH_MOTOR, "第十八条",
     "被保险机动车所有权转移时，交强险合同怎么处理？",
     "《机动车交通事故责任强制保险条例》第十八条规定，被保险机动车所有权转移的，应当办理交强险合同变更手续。"
     "变更手续应当在所有权转移后十五日内办理，逾期未办理的，原合同自动终止。", []),
    ("invented_sentence", ZH_CIVIL, "第五百七十九条",
     "一方不支付价款时，对方可以主张什么？",
     "根据《民法典》第五百七十九条，当事人一方未支付价款、报酬、租金、利息，或者不履行其他金钱债务的，对方可以"
     "请求其支付。债务人迟延支付超过九十日的，债权人还可以请求其额外支付相当于欠款百分之三十的惩罚性赔偿金。", []),
    ("invented_sentence", ZH_LAW, "第四十一条",
     "被保险人可以变更受益人吗？",
     "可以。依照《保险法》第四十一条，被保险人或者投保人可以变更受益人并书面通知保险人，保险人收到通知后应当"
     "在保险单或者其他保险凭证上批注或者附贴批单。投保人变更受益人时须经被保险人同意。"
     "受益人对变更有异议的，应当在接到通知之日起十日内向保险人提出书面异议。", []),
    ("invented_sentence", ZH_LAW, "第一百二十五条",
     "个人保险代理人能同时代理几家保险公司的寿险业务？",
     "《保险法》第一百二十五条规定，个人保险代理人在代为办理人寿保险业务时，不得同时接受两个以上保险人的委托。"
     "违反该规定订立的保险合同一律无效，保险人应当全额退还已收取的保险费。", []),
    ("invented_sentence", ZH_MOTOR, "第十九条",
     "交强险合同期满后，投保人应当做什么？",
     "依照《机动车交通事故责任强制保险条例》第十九条，合同期满，投保人应当及时续保，并提供上一年度的保险单。"
     "投保人逾期未续保的，保险公司有权拒绝承保其以后年度的交强险。", ["投保人应当及时续保，并提供上一年度的保险单"]),
    ("invented_sentence", ZH_LAW, "第六十四条",
     "为查明保险事故支出的费用由谁负担？",
     "《保险法》第六十四条规定，保险人、被保险人为查明和确定保险事故的性质、原因和保险标的的损失程度所支付的"
     "必要的、合理的费用，由保险人承担。被保险人未在事故发生后七日内报告损失的，上述费用改由被保险人自行承担。", []),
    ("invented_sentence", ZH_CIVIL, "第五百八十九条",
     "债权人迟延受领时，债务人有什么权利？",
     "根据《民法典》第五百八十九条，债务人按照约定履行债务，债权人无正当理由拒绝受领的，债务人可以请求债权人"
     "赔偿增加的费用；在债权人受领迟延期间，债务人无须支付利息。受领迟延持续超过三十日的，"
     "债务人可以直接解除合同并要求赔偿全部损失。", []),
    ("invented_sentence", ZH_LAW, "第八条",
     "保险业可以和银行业混业经营吗？",
     "不可以。《保险法》第八条规定，保险业和银行业、证券业、信托业实行分业经营、分业管理，保险公司与银行、证券、"
     "信托业务机构分别设立，国家另有规定的除外。违反分业经营规定的，由国务院保险监督管理机构对保险公司"
     "处五十万元以上二百万元以下的罚款。", []),
]

# (defect, slice, section, instruction, output, evidence); section "" = the whole slice.
EN: list[tuple[str, str, str, str, str, list[str]]] = [
    # --- good
    ("good", EN_ART1, "2",
     "What qualifications does the Constitution set for members of the House of Representatives?",
     "Under Article I, Section 2, a Representative must be at least twenty-five years old, must have "
     "been a citizen of the United States for seven years, and must live in the State that elects "
     "him at the time of the election.",
     ["attained to the Age of twenty five Years, and been seven Years a Citizen of the United States"]),
    ("good", EN_ART1, "3",
     "How many Senators does each State have, and how long is a Senator's term?",
     "Article I, Section 3 gives each State two Senators, chosen by the State legislature, for terms "
     "of six years; each Senator has one vote.",
     ["composed of two Senators from each State, chosen by the Legislature thereof, for six Years"]),
    ("good", EN_ART1, "7",
     "What happens to a bill that the President neither signs nor returns?",
     "Under Article I, Section 7, if the President does not return a bill within ten days, Sundays "
     "excepted, after it has been presented to him, it becomes law as if he had signed it, unless "
     "Congress has adjourned and so prevented its return, in which case it does not become law.",
     ["If any Bill shall not be returned by the President within ten Days (Sundays excepted)"]),
    ("good", EN_ART1, "7",
     "What vote does Congress need to override a presidential veto under Article I, Section 7?",
     "Each House must reconsider the bill and pass it again by two thirds. The votes are taken by "
     "yeas and nays, and the names of those voting for and against are entered on each House's "
     "journal.",
     ["If after such Reconsideration two thirds of that House shall agree to pass the Bill"]),
    ("good", EN_ART1, "5",
     "Can one House of Congress adjourn on its own during a session?",
     "Only briefly. Article I, Section 5 says neither House may, without the consent of the other, "
     "adjourn for more than three days or move to any place other than the one where both Houses "
     "are sitting.",
     ["adjourn for more than three days"]),
    ("good", EN_ART1, "9",
     "When may the privilege of the writ of habeas corpus be suspended?",
     "Article I, Section 9 allows the privilege of the writ of habeas corpus to be suspended only "
     "when public safety requires it in cases of rebellion or invasion.",
     ["unless when in Cases of Rebellion or Invasion the public Safety may require it"]),
    ("good", EN_ART3, "3",
     "How does Article III, Section 3 define treason, and what proof is needed to convict?",
     "Treason consists only in levying war against the United States or in adhering to their "
     "enemies, giving them aid and comfort. A conviction requires the testimony of two witnesses to "
     "the same overt act, or a confession in open court.",
     ["on the Testimony of two Witnesses to the same overt Act, or on Confession in open Court"]),
    ("good", EN_ART3, "1",
     "What does Article III, Section 1 say about the tenure and pay of federal judges?",
     "Judges of the Supreme Court and of the inferior courts hold their offices during good "
     "behaviour, and their compensation may not be reduced while they remain in office.",
     ["shall hold their Offices during good Behaviour"]),
    ("good", EN_ART5, "",
     "How can amendments to the Constitution be proposed under Article V?",
     "Article V provides two routes: Congress proposes amendments whenever two thirds of both Houses "
     "deem it necessary, or Congress calls a convention for proposing amendments when the "
     "legislatures of two thirds of the States apply for one.",
     ["whenever two thirds of both Houses shall deem it necessary, shall propose Amendments"]),
    ("good", EN_ART5, "",
     "What does Article V require for an amendment to be ratified?",
     "A proposed amendment becomes part of the Constitution when it is ratified by the legislatures "
     "of three fourths of the States, or by conventions in three fourths of them, whichever mode "
     "Congress proposes.",
     ["ratified by the Legislatures of three fourths of the several States"]),
    ("good", EN_AM5, "",
     "What protections does the Fifth Amendment give a person accused of a crime?",
     "The Fifth Amendment requires a grand jury indictment for capital or otherwise infamous crimes, "
     "except in military cases in time of war or public danger; it forbids putting a person twice "
     "in jeopardy for the same offense; it protects against being compelled to be a witness against "
     "oneself; and it guarantees due process of law.",
     ["nor shall any person be subject for the same offense to be twice put in jeopardy of life or limb"]),
    ("good", EN_AM5, "",
     "What does the Fifth Amendment say about taking private property?",
     "Private property may not be taken for public use without just compensation.",
     ["nor shall private property be taken for public use, without just compensation"]),
    ("good", EN_ART1, "8",
     "What limit does Article I, Section 8 put on funding the army?",
     "Congress may raise and support armies, but no appropriation of money for that use may run for "
     "a term longer than two years.",
     ["no Appropriation of Money to that Use shall be for a longer Term than two Years"]),
    # --- good_calc
    ("good_calc", EN_ART5, "",
     "If there are 50 States, how many State legislatures must ratify an amendment under Article V?",
     "Ratification needs three fourths of the States. Three fourths of 50 is 37.5, and a State "
     "cannot be split, so 38 State legislatures must ratify it.",
     ["ratified by the Legislatures of three fourths of the several States"]),
    ("good_calc", EN_ART1, "7",
     "A bill is vetoed. 435 Representatives and 100 Senators are present. Under Article I, Section 7, "
     "how many votes does it take in each chamber to pass it over the veto?",
     "Each House needs two thirds. Two thirds of 435 is 290, and two thirds of 100 is 66.67, so 290 "
     "Representatives and 67 Senators must agree.",
     ["two thirds of that House shall agree to pass the Bill"]),
    ("good_calc", EN_ART1, "2",
     "A candidate was born on 10 May 2001. Under Article I, Section 2, from what date is she old "
     "enough to be a Representative?",
     "A Representative must have reached the age of twenty-five, so she is old enough from "
     "10 May 2026.",
     ["attained to the Age of twenty five Years"]),
    ("good_calc", EN_ART1, "3",
     "Someone became a citizen in 2017. Under Article I, Section 3, in what year does he first meet "
     "the Senate's citizenship requirement?",
     "A Senator must have been a citizen of the United States for nine years, so he meets that "
     "requirement in 2026.",
     ["been nine Years a Citizen of the United States"]),
    ("good_calc", EN_ART1, "2",
     "A State has a population of 600,000. Under Article I, Section 2, what is the largest number of "
     "Representatives it could have?",
     "The number of Representatives may not exceed one for every thirty thousand, so "
     "600,000 ÷ 30,000 = 20 Representatives at most.",
     ["The Number of Representatives shall not exceed one for every thirty Thousand"]),
    ("good_calc", EN_ART1, "5",
     "The House has 435 members present. How many must ask for it before the yeas and nays are "
     "entered on the Journal under Article I, Section 5?",
     "One fifth of those present can demand it, and one fifth of 435 is 87 members.",
     ["at the Desire of one fifth of those Present, be entered on the Journal"]),
    ("good_calc", EN_ART1, "9",
     "Under Article I, Section 9, what was the most that could be charged on the importation of "
     "40 persons?",
     "The tax could not exceed ten dollars for each person, so at most 40 × 10 = 400 dollars.",
     ["not exceeding ten dollars for each Person"]),
    ("good_calc", EN_ART1, "8",
     "What is the largest area, in square miles, that the federal district could cover under "
     "Article I, Section 8?",
     "The district may not exceed ten miles square, which is 10 × 10 = 100 square miles.",
     ["not exceeding ten Miles square"]),
    ("good_calc", EN_ART1, "5",
     "If the Senate has 100 members, how many make a quorum under Article I, Section 5?",
     "A majority of the members constitutes a quorum to do business, so 51 Senators.",
     ["a Majority of each shall constitute a Quorum to do Business"]),
    ("good_calc", EN_ART1, "3",
     "A 29-year-old has been a citizen for twelve years. Can she be a Senator under Article I, "
     "Section 3?",
     "Not yet. A Senator must be at least thirty years old and a citizen for nine years; she meets "
     "the citizenship rule but must wait 1 more year to reach thirty.",
     ["attained to the Age of thirty Years, and been nine Years a Citizen"]),
    # --- good_case
    ("good_case", EN_AM5, "",
     "A man is acquitted of robbery by a jury. Later the prosecutor finds new evidence and charges "
     "him again for the same robbery. What does the Fifth Amendment say?",
     "He cannot be tried again. The Fifth Amendment bars putting a person twice in jeopardy of life "
     "or limb for the same offense, and the acquittal ended that jeopardy.",
     ["twice put in jeopardy of life or limb"]),
    ("good_case", EN_AM5, "",
     "At her criminal trial the prosecution wants to force the defendant to testify about the "
     "crime. Can it?",
     "No. Under the Fifth Amendment no one may be compelled in a criminal case to be a witness "
     "against himself, so she can refuse to testify.",
     ["nor shall be compelled in any criminal case to be a witness against himself"]),
    ("good_case", EN_AM5, "",
     "A city takes a family's land to build a public road and offers nothing in return. Is that "
     "allowed under the Fifth Amendment?",
     "Not without paying. Private property may be taken for public use only with just "
     "compensation, so the family is entitled to fair payment for the land.",
     ["nor shall private property be taken for public use, without just compensation"]),
    ("good_case", EN_ART1, "6",
     "A Senator says something in a floor debate that a businessman considers defamatory, and he "
     "wants to sue her. What protection does Article I, Section 6 give?",
     "For any speech or debate in either House, members may not be questioned in any other place, "
     "so she cannot be sued over what she said in the debate.",
     ["for any Speech or Debate in either House, they shall not be questioned in any other Place"]),
    ("good_case", EN_ART1, "6",
     "A sitting member of the House is offered a post as an officer in a federal department. Can he "
     "take it and keep his seat?",
     "No. Under Article I, Section 6, no person holding an office under the United States may be a "
     "member of either House while he continues in that office, so he would have to give up one of "
     "the two.",
     ["no Person holding any Office under the United States, shall be a Member of either House"]),
    ("good_case", EN_ART1, "10",
     "A State government wants to print its own paper money to pay its debts. Does Article I, "
     "Section 10 allow it?",
     "No. States may not coin money or emit bills of credit, and they may not make anything but "
     "gold and silver coin a tender in payment of debts.",
     ["coin Money; emit Bills of Credit"]),
    ("good_case", EN_ART1, "7",
     "A senator wants to introduce a new tax bill in the Senate first. Is that allowed?",
     "No. Bills for raising revenue must originate in the House of Representatives; the Senate may "
     "only propose or concur with amendments to them.",
     ["All Bills for raising Revenue shall originate in the House of Representatives"]),
    ("good_case", EN_ART3, "2",
     "A federal crime is committed in Texas, and the government wants to hold the jury trial in "
     "New York. What does Article III, Section 2 say?",
     "The trial must be held in the State where the crime was committed, so it belongs in Texas. "
     "Only crimes committed outside any State may be tried where Congress has directed by law.",
     ["such Trial shall be held in the State where the said Crimes shall have been committed"]),
    ("good_case", EN_ART3, "3",
     "A man is convicted of treason. Can the government also take property from his children as "
     "punishment?",
     "No. Congress may set the punishment for treason, but no attainder of treason may work "
     "corruption of blood or forfeiture beyond the life of the person attainted, so his children "
     "cannot be punished for it.",
     ["no Attainder of Treason shall work Corruption of Blood, or Forfeiture except during the Life "
      "of the Person attainted"]),
    ("good_case", EN_ART1, "3",
     "The Senate splits 50 to 50 on a bill. What role does the Vice President play?",
     "The Vice President, as President of the Senate, normally has no vote, but may vote when the "
     "Senators are equally divided, as they are here, so he can break the tie.",
     ["shall have no Vote, unless they be equally divided"]),
    # --- number_swapped
    ("number_swapped", EN_ART1, "2",
     "What are the age and citizenship requirements for a Representative?",
     "No person may be a Representative who has not reached the age of twenty five years and been "
     "nine years a citizen of the United States, and who is not an inhabitant of the State that "
     "chooses him.", []),
    ("number_swapped", EN_ART1, "3",
     "How is the Senate composed under Article I, Section 3?",
     "The Senate is composed of three Senators from each State, chosen by the legislature thereof, "
     "for six years, and each Senator has one vote.", []),
    ("number_swapped", EN_ART1, "7",
     "How long does the President have to return a bill before it becomes law without his "
     "signature?",
     "If a bill is not returned by the President within twelve days (Sundays excepted) after it "
     "has been presented to him, it becomes law as if he had signed it, unless Congress by its "
     "adjournment prevents its return.", []),
    ("number_swapped", EN_ART1, "5",
     "For how long may one House adjourn without the consent of the other?",
     "Neither House, during the session of Congress, may adjourn for more than five days without "
     "the consent of the other, nor move to any other place than that in which the two Houses "
     "are sitting.", []),
    ("number_swapped", EN_ART1, "9",
     "What tax could Congress impose on the importation of persons before 1808?",
     "Congress could not prohibit such migration or importation before 1808, but a tax or duty "
     "could be imposed on it, not exceeding twenty dollars for each person.", []),
    ("number_swapped", EN_ART5, "",
     "How is a proposed amendment ratified under Article V?",
     "A proposed amendment is valid as part of the Constitution when ratified by the legislatures "
     "of two thirds of the several States, or by conventions in two thirds thereof.", []),
    ("number_swapped", EN_ART1, "2",
     "How often must the census be taken under Article I, Section 2?",
     "The actual enumeration must be made within three years after the first meeting of Congress, "
     "and within every subsequent term of twenty years, in the manner Congress directs by law.", []),
    ("number_swapped", EN_ART1, "3",
     "What majority does the Senate need to convict on impeachment?",
     "No person may be convicted without the concurrence of three fourths of the members present; "
     "when the President is tried, the Chief Justice presides.", []),
    ("number_swapped", EN_ART3, "3",
     "What evidence is required to convict someone of treason?",
     "No person may be convicted of treason unless on the testimony of three witnesses to the same "
     "overt act, or on confession in open court.", []),
    ("number_swapped", EN_ART1, "8",
     "How long may an appropriation for the army last?",
     "Congress may raise and support armies, but no appropriation of money to that use may be for a "
     "longer term than four years.", []),
    ("number_swapped", EN_ART1, "3",
     "How were the Senators divided after the first election?",
     "Immediately after the first election the Senators were divided as equally as possible into "
     "four classes, and the seats of the first class were vacated at the expiration of the second "
     "year.", []),
    # --- wrong_article
    ("wrong_article", EN_ART1, "7",
     "What must happen to a bill after it passes both Houses?",
     "Under Article I, Section 9, every bill that has passed the House of Representatives and the "
     "Senate must, before it becomes a law, be presented to the President for signature or veto.",
     []),
    ("wrong_article", EN_ART5, "",
     "Who may propose amendments to the Constitution?",
     "Article IV provides that Congress, whenever two thirds of both Houses deem it necessary, shall "
     "propose amendments, or shall call a convention on the application of two thirds of the State "
     "legislatures.", []),
    ("wrong_article", EN_AM5, "",
     "What does the Constitution say about double jeopardy?",
     "The Sixth Amendment provides that no person shall be subject for the same offense to be twice "
     "put in jeopardy of life or limb.", []),
    ("wrong_article", EN_ART3, "3",
     "How is treason defined?",
     "According to Article II, Section 3, treason against the United States consists only in "
     "levying war against them, or in adhering to their enemies, giving them aid and comfort.", []),
    ("wrong_article", EN_ART1, "2",
     "How old must a Representative be?",
     "Article I, Section 4 requires a Representative to have attained the age of twenty five years.",
     []),
    ("wrong_article", EN_ART1, "5",
     "Who judges the elections and qualifications of members of Congress?",
     "Article I, Section 2 says each House shall be the judge of the elections, returns and "
     "qualifications of its own members.", []),
    ("wrong_article", EN_ART3, "1",
     "Where is the judicial power of the United States vested?",
     "Under Article VI, Section 1, the judicial power is vested in one supreme Court and in such "
     "inferior courts as Congress may ordain and establish.", []),
    ("wrong_article", EN_ART1, "8",
     "Which clause gives Congress the power to coin money?",
     "Article I, Section 18 gives Congress the power to coin money, regulate its value, and fix the "
     "standard of weights and measures.", []),
    ("wrong_article", EN_ART1, "9",
     "What does the Constitution say about suspending habeas corpus?",
     "The Fourteenth Amendment says the privilege of the writ of habeas corpus shall not be "
     "suspended, unless in cases of rebellion or invasion the public safety may require it.", []),
    ("wrong_article", EN_ART1, "3",
     "How long is a Senator's term?",
     "Per Article 3, Section 1, each Senator is chosen for six years and has one vote.", []),
    # --- context_dependent
    ("context_dependent", EN_ART1, "3",
     "According to the passage, how old must a Senator be?",
     "A Senator must have attained the age of thirty years.", []),
    ("context_dependent", EN_ART1, "3",
     "What does this section say about the Vice President's vote?",
     "The Vice President is President of the Senate but has no vote unless the Senators are equally "
     "divided.", []),
    ("context_dependent", EN_ART5, "",
     "Based on the excerpt provided, how are amendments ratified?",
     "By the legislatures of three fourths of the States or by conventions in three fourths of "
     "them.", []),
    ("context_dependent", EN_ART1, "9",
     "In the text above, what limits are placed on suspending habeas corpus?",
     "It may be suspended only when public safety requires it in cases of rebellion or invasion.",
     []),
    ("context_dependent", EN_ART1, "7",
     "What does the document say about bills for raising revenue?",
     "They must originate in the House of Representatives, though the Senate may propose or concur "
     "with amendments.", []),
    ("context_dependent", EN_AM5, "",
     "Summarize the main point of the given text.",
     "The Fifth Amendment protects people accused of crimes: grand jury indictment, no double "
     "jeopardy, no compelled self-incrimination, due process and just compensation for takings.",
     []),
    ("context_dependent", EN_ART1, "3",
     "Using the information in this excerpt, explain who tries impeachments.",
     "The Senate has the sole power to try all impeachments, and the Chief Justice presides when "
     "the President is tried.", []),
    ("context_dependent", EN_ART3, "3",
     "What does the author say about the punishment of treason?",
     "Congress may declare the punishment of treason, but no attainder of treason may work "
     "corruption of blood or forfeiture beyond the life of the person attainted.", []),
    ("context_dependent", EN_ART1, "10",
     "Under this clause, can a State coin money?",
     "No. No State may coin money or emit bills of credit.", []),
    ("context_dependent", EN_ART1, "4",
     "As described in the preceding paragraph, how often must Congress assemble?",
     "Congress must assemble at least once in every year.", []),
    ("context_dependent", EN_ART1, "8",
     "Which powers does the article above grant to Congress over the militia?",
     "Congress may provide for calling forth the militia and for organizing, arming and "
     "disciplining it.", []),
    # --- truncated
    ("truncated", EN_ART1, "2",
     "How were Representatives and direct taxes apportioned among the States?",
     "Under Article I, Section 2, Representatives and direct taxes were apportioned among the States "
     "according to their respective numbers, determined by adding to the whole number of free "
     "persons, including those bound to service for a term of years, and excluding Indians not "
     "taxed, three fifths of", []),
    ("truncated", EN_ART1, "3",
     "Who presides over the Senate?",
     "The Vice President of the United States is President of the Senate, but has no vote unless "
     "the Senators are equally divided. The Senate also chooses a President pro tempore, who "
     "presides in the absence of the Vice President,", []),
    ("truncated", EN_ART1, "6",
     "When are members of Congress privileged from arrest?",
     "Members are privileged from arrest during their attendance at the session of their respective "
     "Houses and in going to and returning from the same (except in cases of treason, felony and",
     []),
    ("truncated", EN_ART1, "9",
     "What does Article I, Section 9 say about money drawn from the Treasury?",
     "No money shall be drawn from the Treasury but in consequence of appropriations made by law, "
     "and a regular statement and account of the receipts and expenditures of all public money "
     "shall be published from time to", []),
    ("truncated", EN_ART3, "2",
     "Which cases fall under the Supreme Court's original jurisdiction?",
     "In all cases affecting ambassadors, other public ministers and consuls, and those in which a "
     "State shall be a party, the Supreme Court has original jurisdiction. In all the other cases "
     "it has appellate jurisdiction, both as to law and fact, with such exceptions", []),
    ("truncated", EN_AM5, "",
     "When is a grand jury indictment required?",
     "A grand jury presentment or indictment is required before a person is held to answer for a "
     "capital or otherwise infamous crime, except in cases arising in the land or naval forces, or "
     "in the militia when in actual service in time of war or", []),
    ("truncated", EN_ART1, "10",
     "What may States not do without the consent of Congress?",
     "Without the consent of Congress, no State may lay any duty of tonnage, keep troops or ships "
     "of war in time of peace, or enter into \"any agreement or compact with another State", []),
    ("truncated", EN_ART1, "4",
     "Who regulates the times and places of congressional elections?",
     "The times, places and manner of holding elections for Senators and Representatives are "
     "prescribed in each State by its legislature, but Congress may at any time by law make or "
     "alter such regulations, except as to the", []),
    ("truncated", EN_ART5, "",
     "What limits did Article V place on amendments?",
     "No amendment made prior to 1808 could affect the first and fourth clauses in the ninth "
     "section of the first article, and no State, without its consent, shall be deprived of its "
     "equal suffrage in", []),
    ("truncated", EN_ART1, "8",
     "What power does Congress have over naturalization and bankruptcy?",
     "Congress has the power to establish a uniform rule of naturalization, and uniform laws on the "
     "subject of bankruptcies throughout the United States, and", []),
    # --- non_answer
    ("non_answer", EN_ART1, "3", "How long is a Senator's term?",
     "The excerpt doesn't specify this.", []),
    ("non_answer", EN_ART1, "7", "Who must sign a bill before it becomes law?",
     "I'm not able to answer that based on what was provided.", []),
    ("non_answer", EN_AM5, "", "Can a person be tried twice for the same crime?",
     "That depends on the circumstances; you should consult an attorney.", []),
    ("non_answer", EN_ART5, "", "How many States must ratify an amendment?",
     "There isn't enough information here to say.", []),
    ("non_answer", EN_ART3, "3", "What is treason?",
     "Unfortunately, the source material does not cover this question.", []),
    ("non_answer", EN_ART1, "9", "Can Congress grant titles of nobility?",
     "It is unclear from the given material.", []),
    ("non_answer", EN_ART1, "5", "What is a quorum in Congress?",
     "I don't have enough context to answer.", []),
    ("non_answer", EN_ART1, "8", "Can Congress declare war?",
     "This question cannot be answered from the text.", []),
    ("non_answer", EN_ART3, "1", "How long do federal judges serve?",
     "Please refer to a legal professional for advice on this matter.", []),
    ("non_answer", EN_ART1, "2", "How often are Representatives elected?",
     "The information needed to answer this is not included.", []),
    # --- misattributed
    ("misattributed", EN_ART1, "2",
     "What does Article I, Section 2 say about the composition of the House?",
     "Under Article I, Section 2, the President shall be Commander in Chief of the Army and Navy of "
     "the United States, and of the Militia of the several States when called into actual service.",
     ["The President shall be Commander in Chief of the Army and Navy"]),
    ("misattributed", EN_ART5, "",
     "What does Article V of the Constitution provide?",
     "Article V provides that the Senators and Representatives, and all executive and judicial "
     "officers, shall be bound by oath or affirmation to support this Constitution; but no "
     "religious test shall ever be required as a qualification to any office.", []),
    ("misattributed", EN_AM5, "",
     "What does the Fifth Amendment guarantee?",
     "The Fifth Amendment guarantees the right to a speedy and public trial by an impartial jury of "
     "the State and district where the crime was committed, and the assistance of counsel for the "
     "defence.", ["the right to a speedy and public trial, by an impartial jury"]),
    ("misattributed", EN_ART3, "1",
     "What does Article III, Section 1 establish?",
     "Article III, Section 1 provides that full faith and credit shall be given in each State to the "
     "public acts, records, and judicial proceedings of every other State.", []),
    ("misattributed", EN_ART1, "9",
     "Summarize Article I, Section 9.",
     "According to Article I, Section 9, the President shall hold his office during a term of four "
     "years, and, together with the Vice President chosen for the same term, be elected by "
     "electors appointed by each State.", []),
    ("misattributed", EN_ART1, "3",
     "What rule does Article I, Section 3 establish for the Senate?",
     "Under Article I, Section 3, the right of the people to be secure in their persons, houses, "
     "papers and effects against unreasonable searches and seizures shall not be violated.", []),
    ("misattributed", EN_ART3, "3",
     "What does Article III, Section 3 provide?",
     "Article III, Section 3 says excessive bail shall not be required, nor excessive fines "
     "imposed, nor cruel and unusual punishments inflicted.", ["Excessive bail shall not be required"]),
    ("misattributed", EN_ART1, "10",
     "What limits does Article I, Section 10 place on the States?",
     "Under Article I, Section 10, new States may be admitted by the Congress into this Union, but "
     "no new State shall be formed within the jurisdiction of any other State without the consent "
     "of the legislatures concerned.", []),
    ("misattributed", EN_ART1, "5",
     "What does Article I, Section 5 provide about each House?",
     "Article I, Section 5 provides that the executive power shall be vested in a President of the "
     "United States of America, who shall take an oath before entering office.", []),
    ("misattributed", EN_ART3, "1",
     "Where does the Constitution vest the judicial power?",
     "Under the Judiciary Act of 1789, the Supreme Court consists of a chief justice and five "
     "associate justices, and the country is divided into thirteen judicial districts.", []),
    # --- invented_sentence
    ("invented_sentence", EN_ART1, "2",
     "What qualifications must a Representative meet?",
     "A Representative must be at least twenty five years old, have been a citizen of the United "
     "States for seven years, and be an inhabitant of the State in which he is chosen. He must "
     "also have resided in that State continuously for the two years before the election.", []),
    ("invented_sentence", EN_ART1, "3",
     "How are Senators chosen and how long do they serve?",
     "Each State has two Senators, chosen by its legislature for six years, and each Senator has "
     "one vote. No Senator may serve more than two consecutive terms.", []),
    ("invented_sentence", EN_ART1, "7",
     "Where must revenue bills originate?",
     "All bills for raising revenue must originate in the House of Representatives, but the Senate "
     "may propose or concur with amendments as on other bills. Every such bill must be published "
     "in each State at least thirty days before the final vote.", []),
    ("invented_sentence", EN_ART1, "9",
     "What does Article I, Section 9 say about titles of nobility?",
     "No title of nobility shall be granted by the United States, and no officer may accept any "
     "present, emolument, office or title from a foreign state without the consent of Congress. "
     "An officer who accepts such a gift forfeits his office at once.", []),
    ("invented_sentence", EN_ART3, "3",
     "What does it take to convict someone of treason?",
     "Treason consists only in levying war against the United States or adhering to their "
     "enemies, and no person may be convicted of it unless on the testimony of two witnesses to "
     "the same overt act or on confession in open court. The Attorney General must also approve "
     "every indictment for treason.", []),
    ("invented_sentence", EN_ART5, "",
     "How is the Constitution amended?",
     "Congress proposes amendments when two thirds of both Houses deem it necessary, or calls a "
     "convention on the application of two thirds of the State legislatures; amendments are "
     "ratified by three fourths of the States. No amendment may be proposed during the first year "
     "of a presidential term.", []),
    ("invented_sentence", EN_AM5, "",
     "What does the Fifth Amendment say about self-incrimination?",
     "No person shall be compelled in any criminal case to be a witness against himself. A "
     "defendant who waives this right must do so in writing before a judge.",
     ["nor shall be compelled in any criminal case to be a witness against himself"]),
    ("invented_sentence", EN_ART1, "5",
     "What does Article I, Section 5 require about the Journal?",
     "Each House shall keep a journal of its proceedings and publish it from time to time, except "
     "parts requiring secrecy. The journal must be delivered to the President within sixty days "
     "after the end of every session.", []),
    ("invented_sentence", EN_ART1, "8",
     "What power does Congress have over the navy?",
     "Congress has the power to provide and maintain a navy and to make rules for the government "
     "and regulation of the land and naval forces. Ships of the navy may not be stationed abroad "
     "for more than one year without a new vote of Congress.", []),
    ("invented_sentence", EN_ART3, "1",
     "How long do federal judges hold office?",
     "Judges of the supreme and inferior courts hold their offices during good behaviour, and their "
     "compensation shall not be diminished during their continuance in office. Every judge must "
     "retire upon reaching the age of seventy-five.", []),
]


# fmt: on


def load_slices() -> dict[str, dict]:
    with (REPO / "examples" / "slices.jsonl").open(encoding="utf-8") as f:
        return {s["id"]: s for s in map(json.loads, f)}


_ZH_HEAD = re.compile(r"(?m)^(第[一二三四五六七八九十百零]+条)")


def zh_window(slice_: dict, article: str) -> str:
    """The law's title, the target article, the one before and the two after it."""
    content = slice_["content"]
    starts = [(m.start(), m.group(1)) for m in _ZH_HEAD.finditer(content)]
    names = [name for _, name in starts]
    i = names.index(article)
    lo, hi = max(0, i - 1), min(len(starts), i + 3)
    end = starts[hi][0] if hi < len(starts) else len(content)
    body = content[starts[lo][0] : end]
    # Drop chapter headings that fall inside the window's tail.
    body = re.sub(r"\n#+[^\n]*\n", "\n", body).strip()
    return f"# {slice_['metadata']['title']}\n\n{body}\n"


def en_window(slice_: dict, section: str) -> str:
    """The document title, the article heading, the section before the target and the target."""
    content = slice_["content"]
    title = slice_["metadata"]["title"]
    if not section:
        return f"# {title}\n\n{content.strip()}\n"
    article = re.search(r"(?m)^## [^\n]*Article[^\n]*$", content)
    parts = re.split(r"(?m)^(?=### Section )", content)
    sections = {re.match(r"### Section (\d+)", p).group(1): p.strip() for p in parts[1:]}
    keys = list(sections)
    i = keys.index(section)
    chosen = [sections[k] for k in keys[max(0, i - 1) : i + 1]]
    head = article.group() if article else ""
    return f"# {title}\n\n{head}\n\n" + "\n\n".join(chosen) + "\n"


def build() -> list[dict]:
    slices = load_slices()
    rows = []
    counters: dict[tuple[str, str], int] = {}
    for lang, table in (("zh", ZH), ("en", EN)):
        for defect, sid, where, instruction, output, evidence in table:
            key = (lang, defect)
            counters[key] = counters.get(key, 0) + 1
            slice_ = slices[sid]
            source = zh_window(slice_, where) if lang == "zh" else en_window(slice_, where)
            article = where if lang == "zh" else (f"Section {where}" if where else "")
            row = {
                "id": f"qsm-{lang}-{defect}-{counters[key]:02d}",
                "lang": lang,
                "defect": defect,
                "instruction": instruction,
                "input": "",
                "output": output,
                "source_text": source,
                "source_id": sid,
                "title": slice_["metadata"]["title"],
                "article": article,
            }
            if evidence:
                row["evidence"] = evidence
            rows.append(row)
    return rows


def main() -> None:
    rows = build()
    with OUT.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
