"""Train the PERSON span scorer (``src/keeptrusts/detectors/pii/data/person_model.json``).

Build-time only. Training sentences come from this file's own templates and negative
vocabulary, with names drawn from ``names-dataset`` (the lexicon's source, including names
below the lexicon's rank cut-off so that the scorer also sees unknown names). None of this is
shared with ``scripts/eval_pii.py``, which uses other templates, Faker names and its own hard
negatives.

Usage (``names-dataset`` and ``numpy`` are needed only here)::

    python -m venv build-venv && build-venv/bin/pip install names-dataset==3.3.1 numpy
    PYTHONPATH=src build-venv/bin/python scripts/pii_train_person.py
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from keeptrusts.detectors.pii.person import PersonRecognizer, load_lexicon  # noqa: E402

OUT = ROOT / "src" / "keeptrusts" / "detectors" / "pii" / "data" / "person_model.json"

COUNTRIES = ["US", "GB", "IE", "CA", "ZA", "NG", "GH", "DE", "AT", "CH", "NL", "BE", "FR", "IT",
             "ES", "PT", "BR", "MX", "AR", "CO", "PL", "CZ", "HU", "HR", "SE", "NO", "DK", "FI",
             "GR", "TR", "IN", "BD", "AF", "CN", "HK", "TW", "SG", "MY", "JP",
             "KR", "ID", "PH", "SA", "AE", "EG", "MA", "DZ", "TN", "IQ", "JO", "LB", "IR", "IL",
             "RU", "KZ"]  # fmt: skip

# --- positive templates: {P} is the person; other slots are filled with benign values ---------
POS = [
    "Please forward the contract to {P} before Friday.",
    "Can you draft an email to {P} about the delayed shipment?",
    "{P} will lead the migration next sprint.",
    "I spoke with {P} yesterday and she agreed to the terms.",
    "Hi {P}, thanks for the quick turnaround!",
    "Dear {P},\nplease find the invoice attached.",
    "Best regards,\n{P}",
    "Kind regards, {P}",
    "Cheers,\n{P}\nHead of Operations",
    "My name is {P} and I need help resetting my password.",
    "my name is {P} and i live in {CITY}",
    "i'm {P}, the new intern",
    "This is {P} from the billing team.",
    "Assign the ticket to {P}.",
    "ask {P} if the report is ready",
    "ping {P} about the outage",
    "cc {P} on the thread",
    "The patient, {P}, was admitted on Monday.",
    "Patient name: {P}",
    "Name: {P}\nEmail: {EMAIL}",
    "Contact: {P} ({EMAIL})",
    "Reach out to {P} at {EMAIL} or {PHONE}.",
    "{P}'s laptop needs a new battery.",
    "We hired {P} as a senior accountant.",
    "Summarise the interview with {P}.",
    "Translate this letter from {P} into French.",
    "According to {P}, the budget is fine.",
    "Write a birthday message for my colleague {P}.",
    "Our landlord {P} raised the rent again.",
    "Mr. {P_LAST} called twice this morning.",
    "Dr. {P} will see you at 3pm.",
    "Prof. {P_LAST} approved the thesis.",
    "Mrs {P_LAST} asked for a refund.",
    "The report was written by {P} and {P2}.",
    "{P} and {P2} are on call this week.",
    "Meeting with {P}, {P2} and {P3} at 10.",
    "Attendees: {P}, {P2}",
    "Signed: {P}",
    "Sincerely yours, {P}",
    "Thanks {P}!",
    "hey {P} can you check this",
    "tell {P} the build is green",
    "{P} said the deploy can wait.",
    "Remind {P} to submit the timesheet.",
    "Invite {P} to the design review.",
    "The account owner is {P}.",
    "Customer {P} complained about the late delivery.",
    "Employee {P} (ID 4821) requested leave.",
    "The candidate {P} has ten years of experience.",
    "Please update the address for {P}.",
    "Can you help {P} with the onboarding?",
    "{P} from {CITY} wants a quote.",
    "Our CEO {P} will present the results.",
    "My manager {P} approved the expense.",
    "her husband {P} called the clinic",
    "Send the documents to {P} at {EMAIL}.",
    "Call {P} on {PHONE}.",
    "Who is {P}?",
    "Write a short bio of {P}.",
    "The tenant {P} moved out last month.",
    "Passenger {P} missed the connecting flight.",
    "Reviewer: {P}",
    "Author: {P}",
    "From: {P} <{EMAIL}>",
    "I met {P} at the conference in {CITY}.",
    "Congratulations to {P} on the promotion!",
    "does {P} still work here?",
    "{P} - senior engineer, {CITY}",
    "The file was last edited by {P}.",
    "Escalate to {P} if nobody answers.",
    "Please book a table for {P} at 8pm.",
    "Dear Mr. {P_LAST}, thank you for your letter.",
    "Guest list: {P}, {P2}, {P3}.",
    "we need {P}'s signature",
    "Loop in {P} from legal.",
    "{P} is allergic to penicillin.",
    "The award goes to {P}.",
    "I think {P} misunderstood the requirements.",
    "Can we move {P} to the evening shift?",
    "Rate the essay that {P} submitted.",
    "Why did {P} leave the project?",
    "Make sure {P} gets a copy.",
    "Find a gift idea for {P}, who likes hiking.",
    "Explain the contract to {P} in simple terms.",
    "Yesterday {P} and I fixed the login bug.",
    "Is it okay if {P} joins us later?",
    "{P} needs access to the finance folder.",
    "The keynote by {P} was great.",
    "Give {P} admin rights on the repo.",
    "We are waiting on {P} for the sign-off.",
    "Last week {P} mentioned a new vendor.",
    "Compose a tweet thanking {P}.",
    "Create a calendar invite for {P} at 2pm.",
    "Can you proofread the speech for {P}?",
    "Draft an apology to {P} for the delay.",
    "so {P} says the printer is broken again",
    "apparently {P} never got the email",
    "Interview notes - {P}",
    "{P}\n{CITY}",
    "Owner: {P}",
    "Driver {P} picked up the parcel.",
    "The reviewer ({P}) approved the change.",
    "Ask the owner ({P}) before merging.",
    "{P} has a new role in sales.",
]

# --- negative templates: {T} is a thing (product, tool, place, company, event) ----------------
NEG = [
    "Deploy the {T} cluster to production.",
    "Why does {T} keep crashing after the upgrade?",
    "Compare {T} and {T2} for log aggregation.",
    "We moved from {T} to {T2} last quarter.",
    "The {T} dashboard shows high latency.",
    "Install {T} with the default settings.",
    "How do I configure {T} behind a proxy?",
    "Write a blog post about {T}.",
    "Meet me at {L} station at noon.",
    "The office is near {L} Park.",
    "Take the train from {L} to {L2}.",
    "We flew into {L} and drove to {L2}.",
    "Book a hotel in {L} for two nights.",
    "What is the weather like in {L} today?",
    "Our {L} office is hiring.",
    "The flight to {L} was delayed.",
    "{T} announced record profits this year.",
    "I bought shares of {T} in 2019.",
    "Our contract with {T} Ltd expires in June.",
    "The {T} Foundation funds open-source work.",
    "Is {T} better than {T2} for startups?",
    "Summarise the {T} release notes.",
    "Run the {T} job again.",
    "The {T} pipeline failed on step 3.",
    "Upgrade {T} to version 2.4.1.",
    "Book a hotel near {T} Street.",
    "Visit the {T} Museum on Sunday.",
    "Quarterly Business Review",
    "Project Status Update",
    "Annual Report 2023",
    "Release Notes for Version 5",
    "Please review the Pull Request.",
    "The Sales Team meets on Tuesday.",
    "Thanks for the update!",
    "Happy New Year to everyone!",
    "Merry Christmas and Happy Holidays.",
    "Will you send the file today?",
    "May I ask a question about billing?",
    "Mark the ticket as resolved.",
    "Grant access to the staging bucket.",
    "Bill the customer for two hours.",
    "Rose petals and Daisy chains were on the table.",
    "Amber alerts fire when the queue backs up.",
    "Jack the car up before changing the tyre.",
    "Frank feedback helps the team.",
    "Hope this helps.",
    "Best practices for {T} security",
    "Order {T} from the online store.",
    "The {T} Model 3 has a new battery.",
    "{T} Airlines cancelled the flight.",
    "Lunch at {T} Cafe?",
    "The {T} building is closed for repairs.",
    "Use the {T} API to fetch the data.",
    "Read the {T} documentation first.",
    "ERROR: {T} connection refused",
    "{T} 2.0 is out.",
    "I love the new {T} update.",
    "The {T} team shipped a fix.",
    "in {L} the weather is nice",
    "we are migrating to {T}",
    "Microsoft Teams or Google Meet?",
    "Open the Settings menu and click Advanced.",
    "Set the Timeout to 30 seconds.",
    "Chapter One: The Beginning",
    "Welcome to the Jungle",
    "New York Stock Exchange",
    "Saint Mary's Hospital",
    "Golden Gate Bridge",
    "Victoria Falls",
    "Angel Investors Club",
    "Marks & Spencer opened a new store.",
]

THINGS = """
Kubernetes Grafana Prometheus Terraform Ansible Jenkins Jira Confluence Slack Zoom Redis Kafka
Postgres MongoDB Elasticsearch Kibana Splunk Datadog Sentry Docker Podman Nginx Apache Envoy
Istio Helm Argo Airflow Spark Hadoop Snowflake Databricks BigQuery Tableau Looker PowerBI
Salesforce HubSpot Zendesk Stripe PayPal Shopify Magento WordPress Drupal Figma Notion Asana
Trello Airtable Tesla Ford Toyota Honda Audi Porsche Ferrari Volvo Jaguar Lincoln Chevrolet
Cadillac Dodge Chrysler Mercedes Apple Google Amazon Microsoft Netflix Spotify Uber Airbnb
Oracle Cisco Intel Nvidia Samsung Sony Philips Siemens Bosch Nokia Ericsson Vodafone Orange
Atlas Hermes Apollo Mercury Gemini Orion Phoenix Jupiter Saturn Neptune Pluto Titan Zeus Django
Flask Rails Laravel Spring Angular React Vue Svelte Ember Backbone Meteor Express Ruby Python
Java Kotlin Swift Rust Julia Scala Perl Elixir Crystal Dart Haskell Erlang Pixel Galaxy Kindle
Echo Alexa Siri Cortana Copilot Claude Gemini Llama Mistral Falcon Wells Fargo Morgan Chase
Barclays Lloyds Santander Deutsche Commerzbank Rabobank Allianz Marriott Hilton Hyatt Sheraton
Ritz Carlton Costco Walmart Target Kroger Tesco Aldi Lidl Heineken Carlsberg Guinness Budweiser
Corona Nestle Danone Unilever Gillette Colgate
""".split()  # noqa: SIM905

# place names, many of them also person names: used only in templates with a place cue
PLACES = """
Paris London Berlin Madrid Rome Vienna Prague Warsaw Lisbon Dublin Boston Denver Austin Phoenix
Houston Dallas Chicago Seattle Portland Victoria Florence Georgia Chelsea Kensington Paddington
Waterloo Euston Brighton Cambridge Oxford Lincoln Jackson Madison Washington Hamilton
Wellington Kingston Charlotte Raleigh Savannah Orlando Tampa Sydney Melbourne Perth Canberra
Auckland Toronto Calgary Regina Montreal Quebec Mumbai Chennai Pune Jaipur Lucknow Shanghai
Beijing Shenzhen Osaka Kyoto Nagoya Seoul Busan Dubai Doha Riyadh Cairo Casablanca
""".split()  # noqa: SIM905

CITIES = """
Paris London Berlin Madrid Warsaw Mumbai Toronto Sydney Lagos Cairo Lyon Porto
""".split()  # noqa: SIM905
EMAILS = ["ops@example.com", "j.doe@mail.example.org", "billing@acme.io", "hr@firma.de"]
PHONES = ["+44 20 7946 0958", "(415) 555-0132", "030 123456", "+33 6 12 34 56 78"]

PARTICLE_BY_COUNTRY = {
    "NL": ["van", "van der", "van den", "de", "ter"], "BE": ["van", "de", "van de"],
    "DE": ["von", "van"], "AT": ["von"], "FR": ["de", "du", "le"], "IT": ["di", "de", "del"],
    "ES": ["de", "del", "de la"], "PT": ["da", "dos", "de"], "BR": ["da", "dos", "de"],
    "SA": ["bin", "al", "Al-"], "AE": ["bin", "Al-", "al"], "EG": ["El-", "el"],
    "JO": ["Al-", "abu"], "IQ": ["Al-"],
}  # fmt: skip


class NameSampler:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        cache = Path(tempfile.gettempdir()) / "pii_train_names_cache.json"
        if cache.exists():
            self.first, self.last = json.loads(cache.read_text(encoding="utf-8"))
            self.countries = list(self.first)
            return
        from names_dataset import NameDataset  # build-time only

        nd = NameDataset()
        ok = re.compile(r"^[^\W\d_][^\W\d_'\-]*(?:['\-][^\W\d_]+)?$")
        wanted = set(COUNTRIES)
        ranked: dict[str, dict[str, list[tuple[int, str]]]] = {"first": {}, "last": {}}
        for kind, table in (("first", nd.first_names), ("last", nd.last_names)):
            for name, info in table.items():
                if len(name) < 2 or not ok.match(name) or max(map(ord, name)) > 0x24F:
                    continue
                for c, rank in (info.get("rank") or {}).items():
                    if rank and rank <= 8000 and c in wanted:
                        ranked[kind].setdefault(c, []).append((rank, name))
        self.first: dict[str, list[str]] = {}
        self.last: dict[str, list[str]] = {}
        for c in COUNTRIES:
            firsts = [n for _, n in sorted(ranked["first"].get(c, []))]
            lasts = [n for _, n in sorted(ranked["last"].get(c, []))]
            if len(firsts) > 200 and len(lasts) > 200:
                self.first[c], self.last[c] = firsts, lasts
        self.countries = list(self.first)
        cache.write_text(json.dumps([self.first, self.last]), encoding="utf-8")

    def _pick(self, names: list[str]) -> str:
        r = self.rng.random()
        n = len(names)
        if r < 0.6:
            hi = min(n, 1000)
        elif r < 0.85:
            hi = min(n, 3000)
        else:
            hi = n
        return names[self.rng.randrange(hi)]

    def org(self) -> str:
        c = self.rng.choice(self.countries)
        a, b, d = (self._pick(self.last[c]) for _ in range(3))
        return self.rng.choice(
            [
                f"{a} and Sons",
                f"{a}, {b} and {d}",
                f"{a} & {b}",
                f"{a}-{b}",
                f"{a} Group",
                f"{a} {b} LLP",
                f"{a} & Co.",
                f"{a} Brothers",
                f"{a}, {b} & {d}",
                f"{a} Holdings",
                f"{a} Partners",
            ]
        )

    def place(self) -> str:
        c = self.rng.choice(self.countries)
        a, f = self._pick(self.last[c]), self._pick(self.first[c])
        return self.rng.choice(
            [
                f"Port {f}",
                f"Lake {f}",
                f"North {a}",
                f"East {f}",
                f"San {f}",
                f"Saint-{f}",
                f"{a}ville",
                f"{a}burg",
                f"Mount {a}",
                f"{f}town",
                f"West {a}",
                f"New {a}",
                f"{a} Heights",
            ]
        )

    def person(self, country: str | None = None) -> tuple[str, str, str]:
        """(full name, first, last) in the country's usual form."""
        c = country or self.rng.choice(self.countries)
        first, last = self._pick(self.first[c]), self._pick(self.last[c])
        r = self.rng.random()
        if c in PARTICLE_BY_COUNTRY and self.rng.random() < 0.25:
            p = self.rng.choice(PARTICLE_BY_COUNTRY[c])
            last = p + last if p.endswith("-") else f"{p} {last}"
        if r < 0.52:
            full = f"{first} {last}"
        elif r < 0.72:
            full = first
        elif r < 0.78:
            full = f"{first} {self._pick(self.first[c])} {last}"
        elif r < 0.84:
            full = f"{first} {self.rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
        elif r < 0.88:
            full = f"{first[0]}. {last}"
        elif r < 0.94 and c in ("ES", "MX", "AR", "CO", "PT", "BR"):
            full = f"{first} {last} {self._pick(self.last[c])}"
        elif r < 0.97:
            full = f"{first} {last}-{self._pick(self.last[c])}"
        else:
            full = f"{last} {first}" if c in ("CN", "JP", "KR", "HU") else f"{first} {last}"
        return full, first, last


PERSON_SLOTS = ("P", "P2", "P3", "P_LAST")


def pseudo_word(rng: random.Random) -> str:
    """An invented brand-like word ("Zentrix", "Quorvo"): capitalised, unknown to the lexicon."""
    parts = [
        "zen",
        "tri",
        "quor",
        "vo",
        "lux",
        "ix",
        "nex",
        "ora",
        "fy",
        "ly",
        "cor",
        "da",
        "vek",
        "tra",
        "plex",
        "io",
        "byt",
        "sol",
        "mira",
        "kor",
        "flo",
        "wave",
        "dex",
    ]
    return "".join(rng.choice(parts) for _ in range(rng.randint(2, 3))).capitalize()


def fill(template: str, values: dict[str, str]) -> tuple[str, list[tuple[int, int]]]:
    """Substitute slots; return the text and the spans of person slots."""
    out, spans, pos = [], [], 0
    length = 0
    for m in re.finditer(r"\{(\w+)\}", template):
        chunk = template[pos : m.start()]
        out.append(chunk)
        length += len(chunk)
        val = values[m.group(1)]
        if m.group(1) in PERSON_SLOTS:
            spans.append((length, length + len(val)))
        out.append(val)
        length += len(val)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def make_examples(rng: random.Random, sampler: NameSampler, n_pos: int, n_neg: int):
    data = []
    for _ in range(n_pos):
        t = rng.choice(POS)
        vals = {
            "CITY": rng.choice(CITIES),
            "EMAIL": rng.choice(EMAILS),
            "PHONE": rng.choice(PHONES),
        }
        case = rng.random()
        for slot in ("P", "P2", "P3"):
            full, _first, last = sampler.person()
            vals[slot] = full
            if slot == "P":
                vals["P_LAST"] = last
        if case < 0.15:
            vals = {k: (v.lower() if k in PERSON_SLOTS else v) for k, v in vals.items()}
            t = t[0].lower() + t[1:]
        elif case < 0.18:
            vals = {k: (v.upper() if k in PERSON_SLOTS else v) for k, v in vals.items()}
        data.append(fill(t, vals))
    for _ in range(n_neg):
        t = rng.choice(NEG)
        vals = {
            "T": rng.choice(THINGS),
            "T2": rng.choice(THINGS),
            "L": rng.choice(PLACES),
            "L2": rng.choice(PLACES),
            "ORG": sampler.org(),
            "PLACE": sampler.place(),
            "BRAND": pseudo_word(rng),
        }
        if rng.random() < 0.1:
            vals = {k: v.lower() for k, v in vals.items()}
            t = re.sub(r"\{(\w+)\}", lambda m: "{" + m.group(1).upper() + "}", t.lower())
        data.append((fill(t, vals)[0], []))
    rng.shuffle(data)
    return data


def featurize(rec: PersonRecognizer, data):
    rows, labels = [], []
    for text, gold in data:
        for start, end, _score, feats in rec.candidates(text):
            rows.append(feats)
            labels.append(1 if (start, end) in gold else 0)
    return rows, labels


def train(rows, labels, l2: float, epochs: int):
    import numpy as np

    vocab = sorted({f for r in rows for f in r})
    index = {f: i for i, f in enumerate(vocab)}
    x = np.zeros((len(rows), len(vocab)), dtype=np.float32)
    for i, r in enumerate(rows):
        for f in r:
            x[i, index[f]] = 1.0
    y = np.asarray(labels, dtype=np.float64)
    w = np.zeros(len(vocab) + 1, dtype=np.float64)  # last entry: bias
    xb = np.hstack([x, np.ones((len(rows), 1), dtype=np.float32)])
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    lr, b1, b2 = 0.05, 0.9, 0.999
    for t in range(1, epochs + 1):  # full-batch Adam on the L2-regularised log loss
        p = 1 / (1 + np.exp(-(xb @ w)))
        g = xb.T @ (p - y) / len(y)
        g[:-1] += l2 * w[:-1]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
    p = np.clip(1 / (1 + np.exp(-(xb @ w))), 1e-9, 1 - 1e-9)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    print(f"train log loss {loss:.4f}, accuracy {np.mean((p > 0.5) == y):.4f}")
    b = float(w[-1])
    return {f: float(w[i]) for f, i in index.items()}, b


def evaluate(rec: PersonRecognizer, data, threshold: float, show: int = 0):
    tp = fp = fn = 0
    shown = 0
    for text, gold in data:
        pred = [(f.start, f.end) for f in rec.analyze(text) if f.score >= threshold]
        for s, e in pred:
            if any(s < ge and e > gs for gs, ge in gold):
                tp += 1
            else:
                fp += 1
        for gs, ge in gold:
            if not any(s < ge and e > gs for s, e in pred):
                fn += 1
        bad = [p for p in pred if not any(p[0] < ge and p[1] > gs for gs, ge in gold)]
        missed = [g for g in gold if not any(s < g[1] and e > g[0] for s, e in pred)]
        if shown < show and (bad or missed):
            shown += 1
            print(
                repr(text),
                "FP:",
                [text[s:e] for s, e in bad],
                "FN:",
                [text[s:e] for s, e in missed],
            )
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r


def main() -> None:
    ap = argparse.ArgumentParser(description="train the PERSON span scorer")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--pos", type=int, default=12000)
    ap.add_argument("--neg", type=int, default=6000)
    ap.add_argument("--l2", type=float, default=1e-4)
    ap.add_argument("--epochs", type=int, default=1500)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--show", type=int, default=0, help="print this many dev errors")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    sampler = NameSampler(rng)
    data = make_examples(rng, sampler, args.pos, args.neg)
    split = int(len(data) * 0.85)
    train_data, dev_data = data[:split], data[split:]

    lex = load_lexicon()
    blank = PersonRecognizer(lexicon=lex, model={"weights": {}, "bias": 0.0})
    rows, labels = featurize(blank, train_data)
    print(f"{len(train_data)} train sentences, {len(rows)} candidate spans, {sum(labels)} positive")
    weights, bias = train(rows, labels, args.l2, args.epochs)
    model = {
        "format": 1,
        "trained_by": "scripts/pii_train_person.py",
        "seed": args.seed,
        "bias": round(bias, 4),
        "weights": {k: round(v, 4) for k, v in sorted(weights.items()) if abs(v) >= 1e-4},
    }
    rec = PersonRecognizer(lexicon=lex, model=model)
    for thr in (0.3, 0.4, 0.5, 0.6, 0.7):
        p, r = evaluate(rec, dev_data, thr)
        print(f"dev thr={thr}: P={p:.3f} R={r:.3f}")
    evaluate(rec, dev_data, 0.5, show=args.show)
    args.out.write_text(json.dumps(model, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(model['weights'])} weights)")


if __name__ == "__main__":
    main()
