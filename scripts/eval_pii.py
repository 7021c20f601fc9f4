"""Evaluate the PII detector on a seeded, labelled synthetic set; print accuracy and cost.

    .venv/bin/pip install faker==40.63.0        # evaluation only, not a gateway dependency
    .venv/bin/python scripts/eval_pii.py [--seed 20240607] [--n 1200] [--errors 20]

The set is generated here (nothing is downloaded), and is kept apart from what the PERSON scorer
was tuned on (``scripts/pii_train_person.py``):

* names come from Faker's per-locale name lists (the recognizer's lexicon comes from
  ``names-dataset``), in 22 locales including romanised Chinese and Japanese and Pakistani and
  Algerian names; ~12 % of sentences are written entirely in lower case;
* the sentence templates below are written separately from the training templates;
* hard negatives are written separately from the recognizer's stop list. The report says how
  many of their capitalised words are in the recognizer's word lists anyway, and gives the
  false-positive count on sentences whose words are all absent from those lists.

Phone numbers are Faker's local formats for the 12 required countries (many are fictional and
some are invalid under libphonenumber, which counts against recall), plus hand-made variants.
Card numbers, IBANs, SSNs and IPs come from Faker, with corrupted-checksum copies as negatives.

Scoring follows the baseline in shared/reference/guardrails.md: a prediction is a true positive
when it overlaps a gold span of the same entity.
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

ENTITIES = [
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
]

NAME_LOCALES = [
    "en_US",
    "en_GB",
    "de_DE",
    "fr_FR",
    "es_ES",
    "it_IT",
    "nl_NL",
    "pl_PL",
    "en_IN",
    "pt_BR",
    "en_AU",
    "en_CA",
    "zh_CN",
    "ja_JP",
    "en_PK",
    "fr_DZ",
    "tr_TR",
    "en_NG",
    "sv_SE",
    "cs_CZ",
    "es_MX",
    "id_ID",
]
PHONE_LOCALES = [
    "en_US",
    "en_GB",
    "de_DE",
    "fr_FR",
    "es_ES",
    "it_IT",
    "nl_NL",
    "en_IN",
    "pt_BR",
    "pl_PL",
    "en_AU",
    "en_CA",
]

# Evaluation templates (not used in training). {P}/{P2} person, {PL} person's last name.
POS = [
    "Could you write a thank-you note to {P} for hosting the workshop?",
    "{P} is joining the data team on Monday.",
    "Forward this thread to {P}, she handles procurement.",
    "Yesterday {P} reported a bug in the checkout flow.",
    "Please schedule a 1:1 between me and {P} next week.",
    "Here is the feedback from {P}: the onboarding was confusing.",
    "Draft a reference letter for {P}, who worked with us for three years.",
    "Hello, I am {P} and I cannot log in.",
    "hi, i'm {P}. my account got locked",
    "can u ask {P} to approve my PR",
    "Regards,\n{P}",
    "--\n{P}\nSenior Product Manager",
    "Interviewer: {P}\nCandidate: {P2}",
    "The lease was signed by {P} on 3 March.",
    "Notes from the call with {P} and {P2}:",
    "Rewrite this paragraph so that {P} sounds more formal.",
    "what did {P} say about the roadmap?",
    "{P} (head of finance) needs the numbers by noon.",
    "Please verify the identity of {P} before issuing the refund.",
    "Ms. {PL} requested a callback.",
    "Dr {P} prescribed a new medication.",
    "Send flowers to {P} for her birthday.",
    "The driver, {P}, arrived late.",
    "Can you summarise {P}'s performance review?",
    "Please add {P} to the mailing list.",
    "Our new hire {P} starts tomorrow.",
    "email from {P}: the server is down again",
    "Is {P} available for a call at 4?",
    "I need a cover letter; my name is {P}.",
    "okay so {P} told me the deadline moved",
    "The complaint was filed by {P} via the web form.",
    "Emergency contact: {P}, {PHONE}",
    "Please contact {P} at {EMAIL} or call {PHONE}.",
    "Write a polite reply to {P} declining the offer.",
    "Book two seats for {P} and {P2} on the morning flight.",
    "The witness, {P}, described the car.",
    "Thank you, {P}, for your patience.",
    "{P} wrote the original implementation.",
    "Hand over the keys to {P}.",
    "Send the NDA to {P} ({EMAIL}) today.",
]

# Other entities, in sentences of their own.
ENTITY_TEMPLATES = {
    "EMAIL_ADDRESS": [
        "My email is {X}, write me anytime.",
        "send the logs to {X}",
        "Reply-To: {X}",
        "Is {X} a valid address?",
    ],
    "PHONE_NUMBER": [
        "You can reach me on {X}.",
        "phone: {X}",
        "Call the front desk at {X} after 9.",
        "My mobile is {X}",
        "{X} is the hotline number.",
        "Ring {X} if it breaks.",
        "Fax {X}",
        "WhatsApp me at {X} please",
    ],
    "CREDIT_CARD": [
        "Charge it to card {X}, exp 09/27.",
        "my visa is {X}",
        "Card number: {X}",
        "Refund the payment made with {X}.",
    ],
    "US_SSN": [
        "My SSN is {X}.",
        "social security number {X}",
        "SSN: {X}",
        "Please verify {X} for the tax form.",
    ],
    "IBAN_CODE": [
        "Wire the money to {X}.",
        "IBAN: {X}",
        "Please pay into {X} by Friday.",
        "Our account is {X} (Sparkasse).",
    ],
    "IP_ADDRESS": [
        "The server at {X} is not responding.",
        "Block {X} in the firewall.",
        "ssh admin@{X}",
        "Traffic from {X} spiked at 3am.",
    ],
}

# Hand-written hard negatives (evaluation only): capitalised tools, products, places, companies,
# headings, and numbers that are not phones/cards/SSNs/IBANs/IPs.
HARD_NEGATIVES = [
    "Kubernetes pod scheduling fails when the node is tainted.",
    "Grafana shows a spike in p99 latency after the deploy.",
    "Set up Pulumi stacks for staging and production.",
    "The Jenkins pipeline timed out on the integration stage.",
    "Our Tesla Model 3 needs new tyres before winter.",
    "Meet at Victoria Station by the big clock.",
    "The hike to Angel Falls takes two days.",
    "Open a Jira ticket for the Redis eviction issue.",
    "Migrate the app from Heroku to Fly.io.",
    "The MacBook Pro fan gets loud during builds.",
    "We visited the Louvre and Notre Dame on Sunday.",
    "Terraform Cloud runs are queued behind the Sentinel checks.",
    "Compile the Kotlin 1.9 project with Gradle.",
    "The Atlas cluster in MongoDB is at 80% CPU.",
    "Upgrade Django to 5.0 and Celery to 5.3.",
    "Use Helm to install cert-manager on the cluster.",
    "The Golden Gate Bridge was covered in fog.",
    "Lake Tahoe is beautiful in winter.",
    "Ryanair cancelled my flight to Dublin.",
    "Goldman Sachs raised its growth forecast.",
    "Ask Claude to summarise the quarterly report.",
    "Alexa, play some jazz in the kitchen.",
    "Does Copilot work with Neovim?",
    "Happy Birthday and Best Wishes from the Customer Success Team!",
    "Senior Software Engineer, Platform Infrastructure",
    "Read the Terms of Service and the Privacy Policy.",
    "The Board of Directors approved the Annual Budget.",
    "Take the Piccadilly Line to Kings Cross.",
    "Our office moved to Madison Avenue.",
    "The conference is at the Lincoln Center this year.",
    "Book a table at Nando's near Canary Wharf.",
    "We stayed at the Marriott in San Diego.",
    "Rust and Go are both good choices for the CLI.",
    "Spin up a Postgres replica in Frankfurt.",
    "Wells Fargo and Charles Schwab updated their fees.",
    "The Ford Motor Company recalled 30,000 trucks.",
    "Hewlett Packard Enterprise acquired Juniper Networks.",
    "Dell Technologies reported strong server sales.",
    "Marks & Spencer sells sandwiches at the station.",
    "Ben & Jerry's launched a new flavour.",
    "Sydney Opera House tickets are sold out.",
    "Mount Elizabeth Hospital is in Orchard Road.",
    "Our Slack bot posts to the Engineering channel.",
    "Customer Satisfaction Survey Results",
    "Kickoff Meeting Agenda",
    "The Lambda function logs go to CloudWatch.",
    "GitHub Actions failed on the Windows runner.",
    "Order 20240615-7781 shipped on 2024-06-15.",
    "Version 10.4.2.1 fixes the crash on startup.",
    "The invoice total is 1,234,567.89 EUR.",
    "Build 4815162342 passed all checks.",
    "Meeting room 3.14 is booked from 10:30 to 11:45.",
    "Tracking number 1Z999AA10123456784 is in transit.",
    "The MAC address is 00:1A:2B:3C:4D:5E.",
    "ISBN 978-3-16-148410-0 is out of print.",
    "Use timestamp 1718444800 for the cut-off.",
    "Account 12345678 was closed in 2019.",
    "The population grew from 1,200,000 to 1,450,000.",
    "Ticket JIRA-10234 is blocked by OPS-771.",
    "Postcode SW1A 1AA and ZIP 94105.",
]

LOWER_RATE = 0.12


def faker_for(locale: str, seed: int):
    from faker import Faker

    f = Faker(locale)
    f.seed_instance(seed)
    return f


def person_name(f, locale: str, rng: random.Random) -> tuple[str, str]:
    """(full name, last name) without titles; romanised for Chinese and Japanese."""
    if locale in ("zh_CN", "ja_JP"):
        first, last = f.first_romanized_name(), f.last_romanized_name()
        return (f"{first} {last}" if rng.random() < 0.5 else f"{last} {first}"), last
    first, last = f.first_name(), f.last_name()
    r = rng.random()
    if r < 0.55:
        return f"{first} {last}", last
    if r < 0.75:
        return first, last
    if r < 0.85:
        return f"{first} {f.first_name()} {last}", last
    if r < 0.92:
        return f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}", last
    return f"{first} {last}", last


def fill(template: str, values: dict[str, tuple[str, str]]):
    """values: slot -> (text, entity or ''); returns text and gold spans [(entity, s, e)]."""
    out, gold, pos, length = [], [], 0, 0
    for m in re.finditer(r"\{(\w+)\}", template):
        chunk = template[pos : m.start()]
        out.append(chunk)
        length += len(chunk)
        val, ent = values[m.group(1)]
        if ent:
            gold.append((ent, length, length + len(val)))
        out.append(val)
        length += len(val)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), gold


def corrupt_digit(s: str, rng: random.Random) -> str:
    idx = [i for i, c in enumerate(s) if c.isdigit()]
    i = rng.choice(idx[1:])
    d = str((int(s[i]) + rng.randint(1, 9)) % 10)
    return s[:i] + d + s[i + 1 :]


def us_phone_variants(rng: random.Random) -> str:
    a = rng.choice(["415", "212", "646", "312", "617", "206", "512", "303"])
    b = f"{rng.randint(200, 999)}"
    c = f"{rng.randint(0, 9999):04d}"
    return rng.choice(
        [
            f"{a}-{b}-{c}",
            f"({a}) {b}-{c}",
            f"+1 {a} {b} {c}",
            f"{a}.{b}.{c}",
            f"+1{a}{b}{c}",
            f"1-{a}-{b}-{c}",
        ]
    )


def build_set(seed: int, n: int):
    """Return a list of (text, gold, meta) where meta = {"group": ..., "locale": ..., ...}."""
    rng = random.Random(seed)
    fk = {
        loc: faker_for(loc, seed + i)
        for i, loc in enumerate(sorted(set(NAME_LOCALES + PHONE_LOCALES)))
    }
    items = []

    def phone_value() -> str:
        if rng.random() < 0.25:
            return us_phone_variants(rng)
        return fk[rng.choice(PHONE_LOCALES)].phone_number()

    n_person = int(n * 0.55)
    for _ in range(n_person):
        loc = rng.choice(NAME_LOCALES)
        f = fk[loc]
        t = rng.choice(POS)
        p1, last = person_name(f, loc, rng)
        p2, _ = person_name(f, loc, rng)
        vals = {
            "P": (p1, "PERSON"),
            "P2": (p2, "PERSON"),
            "PL": (last, "PERSON"),
            "EMAIL": (fk["en_US"].email(), "EMAIL_ADDRESS"),
            "PHONE": (phone_value(), "PHONE_NUMBER"),
        }
        lower = rng.random() < LOWER_RATE
        if lower:
            vals = {k: (v.lower(), e) for k, (v, e) in vals.items()}
            t = re.sub(r"\{(\w+)\}", lambda m: "{" + m.group(1).upper() + "}", t.lower())
        text, gold = fill(t, vals)
        items.append((text, gold, {"group": "person", "locale": loc, "lower": lower}))

    # other entities
    per_entity = max(40, int(n * 0.05))
    for ent, templates in ENTITY_TEMPLATES.items():
        for i in range(per_entity):
            t = rng.choice(templates)
            valid, value = True, ""
            if ent == "EMAIL_ADDRESS":
                f = fk[rng.choice(NAME_LOCALES[:12])]
                value = rng.choice([f.email(), f.free_email(), f.company_email(), f.ascii_email()])
            elif ent == "PHONE_NUMBER":
                value = phone_value()
            elif ent == "CREDIT_CARD":
                value = fk["en_US"].credit_card_number()
                if rng.random() < 0.4 and len(value) == 16:
                    sep = rng.choice([" ", "-"])
                    value = sep.join(value[j : j + 4] for j in range(0, 16, 4))
                valid = i % 4 != 3
                if not valid:
                    value = corrupt_digit(value, rng)
            elif ent == "US_SSN":
                value = fk["en_US"].ssn()
                valid = i % 4 != 3
                if not valid:
                    value = rng.choice(["000", "666", "912"]) + value[3:]
            elif ent == "IBAN_CODE":
                loc = rng.choice(
                    ["de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT", "pl_PL", "en_GB", "pt_BR"]
                )
                value = fk[loc].iban()
                if rng.random() < 0.5:
                    value = " ".join(value[j : j + 4] for j in range(0, len(value), 4))
                valid = i % 4 != 3
                if not valid:
                    value = corrupt_digit(value, rng)
            elif ent == "IP_ADDRESS":
                f = fk["en_US"]
                value = rng.choice(
                    [f.ipv4(), f.ipv4_private(), f.ipv6(), "::1", "fe80::1ff:fe23:4567:890a"]
                )
            text, gold = fill(t, {"X": (value, ent if valid else "")})
            group = ent if valid else f"{ent}:invalid"
            items.append((text, gold, {"group": group}))

    # negatives: hand-written hard negatives, Faker cities and companies
    for text in HARD_NEGATIVES:
        items.append((text, [], {"group": "neg:hand"}))
        items.append((text.lower(), [], {"group": "neg:hand"}))
    for _ in range(max(60, n // 10)):
        loc = rng.choice(PHONE_LOCALES)
        f = fk[loc]
        if rng.random() < 0.5:
            t = rng.choice(
                [
                    "The new office is in {X}.",
                    "Ship the parcel to {X} by Friday.",
                    "Weather forecast for {X} tomorrow?",
                    "{X} has a new tram line.",
                ]
            )
            items.append((t.replace("{X}", f.city()), [], {"group": "neg:faker_city"}))
        else:
            t = rng.choice(
                [
                    "{X} signed the supply contract.",
                    "We buy our parts from {X}.",
                    "Is {X} hiring engineers?",
                    "Send the tender to {X} Procurement.",
                ]
            )
            items.append((t.replace("{X}", f.company()), [], {"group": "neg:faker_company"}))
    rng.shuffle(items)
    return items


def merge(spans):
    spans = sorted(spans)
    out = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def score(items, analyzer, errors: int = 0):
    counts = {e: [0, 0, 0] for e in ENTITIES}  # tp, fp, fn
    by_locale = defaultdict(lambda: [0, 0])  # found, total
    lower = [0, 0]
    neg_fp = defaultdict(lambda: [0, 0])  # sentences with a PERSON false positive, total
    person_fp_by_group: dict[str, int] = defaultdict(int)
    err_shown = 0
    for text, gold, meta in items:
        found = analyzer.analyze(text)
        bad = []
        for ent in ENTITIES:
            preds = merge([(f.start, f.end) for f in found if f.entity == ent])
            golds = [(s, e) for g, s, e in gold if g == ent]
            c = counts[ent]
            for s, e in preds:
                if any(s < ge and e > gs for gs, ge in golds):
                    c[0] += 1
                else:
                    c[1] += 1
                    bad.append(f"FP {ent} {text[s:e]!r}")
                    if ent == "PERSON":
                        person_fp_by_group[meta["group"]] += 1
            for gs, ge in golds:
                hit = any(s < ge and e > gs for s, e in preds)
                if not hit:
                    c[2] += 1
                    bad.append(f"FN {ent} {text[gs:ge]!r}")
                if ent == "PERSON":
                    by_locale[meta.get("locale", "?")][0] += hit
                    by_locale[meta.get("locale", "?")][1] += 1
                    if meta.get("lower"):
                        lower[0] += hit
                        lower[1] += 1
        if meta["group"].startswith("neg:"):
            neg_fp[meta["group"]][0] += any(f.entity == "PERSON" for f in found)
            neg_fp[meta["group"]][1] += 1
        if bad and err_shown < errors:
            err_shown += 1
            print(f"  {text!r}: {'; '.join(bad)}")
    neg_fp["_person_fp_by_group"] = person_fp_by_group  # type: ignore[assignment]
    return counts, by_locale, lower, neg_fp


def prf(c):
    tp, fp, fn = c
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1


def make_text(items, words: int, rng: random.Random) -> str:
    out, count = [], 0
    pool = [t for t, _, _ in items]
    while count < words:
        t = rng.choice(pool)
        out.append(t)
        count += len(t.split())
    return " ".join(out)


def timing(analyzer, items, words: int, reps: int, seed: int):
    rng = random.Random(seed)
    texts = [make_text(items, words, rng) for _ in range(20)]
    for t in texts[:3]:
        analyzer.analyze(t)
    samples = []
    for i in range(reps):
        t = texts[i % len(texts)]
        t0 = time.perf_counter()
        analyzer.analyze(t)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


class SpacyPersonAnalyzer:
    """Frontier option: spaCy NER for PERSON (``--spacy MODEL``), our recognizers for the rest."""

    def __init__(self, model: str, entities: list[str]) -> None:
        import spacy

        from keeptrusts.detectors.base import Finding
        from keeptrusts.detectors.pii import PiiAnalyzer

        self._finding = Finding
        self.person = "PERSON" in entities
        keep = ["ner", "tok2vec"]
        self.nlp = spacy.load(
            model,
            exclude=[
                p
                for p in ("tagger", "parser", "attribute_ruler", "lemmatizer", "senter")
                if p not in keep
            ],
        )
        rest = [e for e in entities if e != "PERSON"]
        self.rest = PiiAnalyzer(entities=rest) if rest else None

    def analyze(self, text: str):
        out = list(self.rest.analyze(text)) if self.rest else []
        if self.person:
            for ent in self.nlp(text).ents:
                if ent.label_ == "PERSON":
                    out.append(self._finding("PERSON", ent.start_char, ent.end_char, 0.85, "spacy"))
        return out


def stoplist_overlap():
    from keeptrusts.detectors.pii import person_words as W

    known = W.STOPLIST | W.AMBIGUOUS | W.THING_FOLLOWERS
    words = {w.lower() for t in HARD_NEGATIVES for w in re.findall(r"\b[A-Z][\w']+", t)}
    inside = sorted(w for w in words if w in known)
    clean = [
        t for t in HARD_NEGATIVES if not any(w.lower() in known for w in re.findall(r"[\w']+", t))
    ]
    return len(inside), len(words), clean


def main() -> None:
    ap = argparse.ArgumentParser(description="evaluate the PII detector")
    ap.add_argument("--seed", type=int, default=20240607)
    ap.add_argument("--n", type=int, default=1200, help="approximate number of sentences")
    ap.add_argument("--errors", type=int, default=0, help="print this many sentences with errors")
    ap.add_argument("--reps", type=int, default=200, help="timing repetitions")
    ap.add_argument("--spacy", metavar="MODEL", help="also evaluate spaCy NER for PERSON")
    args = ap.parse_args()

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    items = build_set(args.seed, args.n)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    from keeptrusts.detectors.pii import PiiAnalyzer

    analyzer = PiiAnalyzer(entities=ENTITIES)
    analyzer.analyze("warm up John Smith +44 20 7946 0958")
    load_s = time.perf_counter() - t0
    rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    n_gold = defaultdict(int)
    for _, gold, _ in items:
        for g, _, _ in gold:
            n_gold[g] += 1
    print(
        f"set: {len(items)} sentences, seed {args.seed}; gold spans: "
        + ", ".join(f"{k} {v}" for k, v in sorted(n_gold.items()))
    )
    if args.errors:
        print("errors:")
    counts, by_locale, lower, neg_fp = score(items, analyzer, args.errors)

    print("\n| entity | precision | recall | F1 | tp | fp | fn |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for ent in ENTITIES:
        p, r, f1 = prf(counts[ent])
        tp, fp, fn = counts[ent]
        print(f"| {ent} | {p:.3f} | {r:.3f} | {f1:.3f} | {tp} | {fp} | {fn} |")

    print(
        "\nPERSON recall by locale: "
        + ", ".join(f"{loc} {a / b:.2f}" for loc, (a, b) in sorted(by_locale.items()) if loc != "?")
    )
    if lower[1]:
        print(
            f"PERSON recall, lower-case sentences: {lower[0]}/{lower[1]} "
            f"= {lower[0] / lower[1]:.2f}"
        )
    fp_groups = neg_fp.pop("_person_fp_by_group")
    for g, (a, b) in sorted(neg_fp.items()):
        print(f"negative sentences with a PERSON false positive, {g}: {a}/{b}")
    tp, fp, _ = counts["PERSON"]
    print(
        "PERSON false positives by sentence group: "
        + ", ".join(f"{g} {n}" for g, n in sorted(fp_groups.items()))
    )
    fp_x = fp - fp_groups.get("neg:faker_company", 0)
    print(f"PERSON precision without the Faker company-name sentences: {tp / (tp + fp_x):.3f}")
    print("\nPERSON threshold sweep (default " + f"{analyzer.thresholds['PERSON']}):")
    for thr in (0.3, 0.4, 0.5, 0.6, 0.7):
        an = PiiAnalyzer(entities=["PERSON"], thresholds={"PERSON": thr})
        c, *_ = score([(t, [g for g in gold if g[0] == "PERSON"], m) for t, gold, m in items], an)
        p, r, f1 = prf(c["PERSON"])
        print(f"  {thr}: P {p:.3f} R {r:.3f} F1 {f1:.3f}")
    inside, total, clean = stoplist_overlap()
    print(
        f"hand-written negatives: {inside}/{total} of their capitalised words are in the "
        f"recognizer's word lists; {len(clean)} sentences use none of them"
    )
    clean_items = [(t, [], {"group": "neg:clean"}) for t in clean]
    clean_items += [(t.lower(), [], {"group": "neg:clean"}) for t in clean]
    *_, clean_fp = score(clean_items, analyzer)
    a, b = clean_fp["neg:clean"]
    print(f"  PERSON false positives on those (and their lower-case copies): {a}/{b} sentences")

    print(
        f"\nload: {load_s:.2f} s; RSS {rss1:.0f} MB before import, {rss2:.0f} MB after load "
        f"(+{rss2 - rss1:.0f} MB; interpreter+faker {rss0:.0f}->{rss1:.0f} MB)"
    )
    configs = [
        ("all 7 entities", ENTITIES),
        ("PERSON only", ["PERSON"]),
        ("6 pattern entities (no PERSON)", [e for e in ENTITIES if e != "PERSON"]),
    ]
    if args.spacy:
        sp = SpacyPersonAnalyzer(args.spacy, ENTITIES)
        c, _, low, negs = score(items, sp)
        negs.pop("_person_fp_by_group")
        p, r, f1 = prf(c["PERSON"])
        print(
            f"\nspaCy {args.spacy} PERSON: P {p:.3f} R {r:.3f} F1 {f1:.3f}; lower-case "
            f"{low[0]}/{low[1]}; " + ", ".join(f"{g} {a}/{b}" for g, (a, b) in sorted(negs.items()))
        )
        configs.append((f"spaCy {args.spacy} PERSON + our 6 pattern entities", "spacy"))
    print("\n| configuration | ~50 words median / p95 (ms) | ~1,000 words median / p95 (ms) |")
    print("| --- | --- | --- |")
    for label, ents in configs:
        an = sp if ents == "spacy" else PiiAnalyzer(entities=ents)
        m50, p50 = timing(an, items, 50, args.reps, args.seed)
        m1k, p1k = timing(an, items, 1000, max(20, args.reps // 5), args.seed)
        print(f"| {label} | {m50:.2f} / {p50:.2f} | {m1k:.1f} / {p1k:.1f} |")


if __name__ == "__main__":
    main()
