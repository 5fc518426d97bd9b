#!/usr/bin/env python3
"""Generate the bundled example's knowledge: Larkspur's help-centre documents and questions
whose answers are in them (task-qa.yaml). Called by generate.py; runs alone too:

    python examples/support-tickets/generate_docs.py            # writes docs/ and data/qa.jsonl here
    python examples/support-tickets/generate_docs.py --out DIR  # writes DIR/docs/ and DIR/qa.jsonl

Everything is invented, like the tickets: the policies, prices, times and addresses below
are Larkspur's, a company that does not exist. Standard library only, no randomness, so
every run writes the same bytes.

The documents: seven Markdown files (headings, then paragraphs), one HTML page and one JSON
file, the formats a help centre exports. Each question row names its gold source the way
the knowledge base numbers paragraphs (tunewise/knowledge/readers.py):

    {"input": question, "output": answer, "answers": [every accepted answer],
     "source": {"document": "refund-policy.md", "paragraph": 2}}

``paragraph`` is 0-based over the document's paragraphs in reading order, headings not
counted: a Markdown paragraph, an HTML <p> or <li>, a JSON record. Each fact is asked two
ways, so a question's twin may land in the training split: closed-book arms (and a LoRA
trained on the training questions) can learn a fact that way, which is exactly the
knowledge-injection comparison the bake-off makes against retrieval.
"""

from __future__ import annotations

import argparse
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Fact:
    key: str  # how questions refer to this paragraph
    text: str


@dataclass
class Section:
    heading: str
    facts: list[Fact]


@dataclass
class Document:
    name: str  # file name in docs/
    title: str
    sections: list[Section] = field(default_factory=list)

    def paragraphs(self) -> list[Fact]:
        return [fact for section in self.sections for fact in section.facts]


def S(heading: str, *facts: tuple[str, str]) -> Section:  # noqa: N802 (short: it reads as a table below)
    return Section(heading, [Fact(key, text) for key, text in facts])


DOCUMENTS = [
    Document("refund-policy.md", "Refund policy", [
        S("Hardware returns",
          ("return_window", "Hardware bought from Larkspur can be returned within 30 days of delivery for a full "
                            "refund, as long as it comes back in its original packaging with all its cables."),
          ("restocking", "Opened card readers, receipt printers and barcode scanners are refunded minus a 15% "
                         "restocking fee. Unopened hardware carries no fee.")),
        S("Subscription refunds",
          ("pro_rata", "A subscription cancelled within the first 14 days of a billing period is refunded pro "
                       "rata. After that, the plan runs to the end of the period and is not refunded.")),
        S("How refunds are paid",
          ("refund_time", "Refunds go back to the original payment method within 5 to 7 business days. A "
                          "refund of a charge that was taken from payouts is credited to the Larkspur balance "
                          "instead.")),
    ]),
    Document("shipping.md", "Shipping and delivery", [
        S("Delivery times",
          ("warehouse", "Orders placed before 2 pm Eastern ship the same business day from the Larkspur "
                        "warehouse in Columbus, Ohio."),
          ("express", "Standard delivery takes 3 to 5 business days and is free. Express delivery costs $19 "
                      "and takes 1 to 2 business days.")),
        S("Tracking",
          ("tracking", "A tracking number is emailed when the parcel leaves the warehouse. It also appears "
                       "under Orders in the Larkspur Dashboard.")),
        S("Lost or damaged parcels",
          ("lost", "A parcel with no tracking update for 7 days is treated as lost, and Larkspur ships a "
                   "replacement at no charge. Report a damaged parcel within 48 hours of delivery.")),
    ]),
    Document("plans-and-billing.md", "Plans and billing", [
        S("Plans",
          ("plans", "Larkspur has three plans: Starter at $29 a month for one location, Growth at $79 a month "
                    "for up to five locations, and Pro at $149 a month for unlimited locations."),
          ("annual", "Paying for a year up front gives two months free on every plan.")),
        S("Invoices and payment",
          ("invoices", "Invoices are issued on the 1st of each month and can be downloaded as PDF files from "
                       "Billing in the Larkspur Dashboard."),
          ("methods", "Larkspur accepts Visa, Mastercard, American Express and ACH bank transfers. Checks "
                      "are not accepted.")),
        S("Failed payments",
          ("retries", "When a payment fails, Larkspur retries it after 3 days and again after 7 days. If the "
                      "third attempt fails, the account is paused until the balance is paid.")),
    ]),
    Document("account-security.md", "Account access and security", [
        S("Signing in",
          ("reset", "Password reset links are sent to the account's email address and expire after 30 minutes."),
          ("two_factor", "Two-factor codes come from the Larkspur Go app or by text message, and each code is "
                         "valid for 60 seconds."),
          ("lockout", "After 5 failed sign-in attempts the account is locked for 15 minutes.")),
        S("Suspicious activity",
          ("report", "Report suspicious logins, unknown users or phishing emails to security@larkspur.example. "
                     "The security team answers within 1 hour, day and night.")),
    ]),
    Document("hardware-troubleshooting.md", "Hardware troubleshooting", [
        S("Larkspur Reader",
          ("pairing", "To pair the Larkspur Reader, hold its power button for 8 seconds until the light blinks "
                      "blue, then choose it under Settings > Devices in the Larkspur Go app.")),
        S("Receipt printer",
          ("blank", "Blank receipts mean the paper roll is in upside down: the thermal side must face the "
                    "print head. Larkspur Printers take 80 mm thermal rolls.")),
        S("Barcode scanner",
          ("scanner_reset", "To reset the Larkspur Scanner to factory settings, scan the RESET-ALL barcode on "
                            "page 4 of its quick start guide.")),
        S("Kiosk",
          ("kiosk_restart", "The Larkspur Kiosk restarts itself every night at 3 am to install updates. "
                            "Orders taken during the restart are kept and sent when it comes back.")),
        S("Service status",
          ("status", "Outages are posted on the status page at https://status.larkspur.example before support "
                     "is told about them.")),
    ]),
    Document("payroll-faq.md", "Larkspur Payroll FAQ", [
        S("Pricing",
          ("payroll_price", "Larkspur Payroll costs $6 per employee per month, on top of any plan.")),
        S("Running payroll",
          ("approval", "A payroll run must be approved by 5 pm Eastern two business days before payday."),
          ("tax_forms", "Larkspur Payroll files W-2 forms for employees and 1099 forms for contractors every "
                        "January.")),
    ]),
    Document("cancellation.md", "Cancelling a plan or closing an account", [
        S("Cancelling",
          ("who_cancels", "Only the account owner can cancel a plan: in the Larkspur Dashboard, go to Billing, "
                          "then Plan, and choose Cancel plan. Staff accounts cannot cancel.")),
        S("Closing the account",
          ("retention", "After an account is closed its data is kept for 90 days, then deleted for good. An "
                        "export can be downloaded until then.")),
    ]),
]

# The HTML page and the JSON file: the same Fact structure, rendered to those formats.
WARRANTY = Document("warranty.html", "Hardware warranty", [
    S("Coverage",
      ("warranty_length", "All Larkspur hardware carries a 2-year limited warranty from the date of delivery."),
      ("kiosk_screen", "The touchscreen of the Larkspur Kiosk is covered for 1 year only.")),
    S("What is not covered",
      ("liquid", "Damage from liquids, drops or unauthorised repairs is not covered."),
      ("wear", "Worn receipt printer cutters and scratched screens are not covered.")),
    S("Making a claim",
      ("claim", "Warranty claims are opened from Support, then Hardware, in the Larkspur Dashboard. Larkspur "
                "emails a prepaid return label within 2 business days.")),
])
SPECS = Document("hardware-specs.json", "Hardware specifications", [
    S("Larkspur Terminal", ("terminal_spec", "The Larkspur Terminal has a 10.1-inch screen, runs on mains power "
                                             "and connects over Wi-Fi or Ethernet.")),
    S("Larkspur Reader", ("reader_battery", "The Larkspur Reader's battery lasts about 500 transactions per "
                                            "charge and charges over USB-C in 2 hours.")),
    S("Larkspur Printer", ("printer_speed", "The Larkspur Printer prints 250 mm of receipt per second.")),
    S("Larkspur Kiosk", ("kiosk_spec", "The Larkspur Kiosk has a 21.5-inch touchscreen and a built-in card "
                                       "reader.")),
])

# (fact key, two phrasings of the question, accepted answers: the first is the output)
QUESTIONS = [
    ("return_window", ("How many days after delivery can I return hardware for a full refund?",
                       "What is the return window for Larkspur hardware?"), ["30 days", "within 30 days", "30"]),
    ("restocking", ("What restocking fee is charged on an opened card reader?",
                    "How much is taken off the refund for opened hardware?"),
     ["15%", "15 percent", "a 15% restocking fee"]),
    ("pro_rata", ("Within how many days of a billing period is a cancelled subscription refunded pro rata?",
                  "How long into a billing period can I cancel and still get a pro rata refund?"),
     ["14 days", "the first 14 days", "14"]),
    ("refund_time", ("How long does a refund take to reach my card?",
                     "How many business days until a refund is back on the original payment method?"),
     ["5 to 7 business days", "5-7 business days", "5 to 7 days"]),
    ("warehouse", ("From which city do Larkspur orders ship?",
                   "Where is the Larkspur warehouse?"), ["Columbus, Ohio", "Columbus", "Columbus Ohio"]),
    ("warehouse", ("What is the cut-off time for same-day shipping?",
                   "By what time must an order be placed to ship the same business day?"),
     ["2 pm Eastern", "2 pm", "before 2 pm Eastern"]),
    ("express", ("How much does Express delivery cost?",
                 "What is the price of Express shipping?"), ["$19", "19 dollars", "19"]),
    ("tracking", ("Where in the Larkspur Dashboard do I find my tracking number?",
                  "Which Dashboard section shows an order's tracking number?"), ["Orders", "under Orders"]),
    ("lost", ("After how many days without a tracking update is a parcel treated as lost?",
              "When does Larkspur consider a parcel lost?"), ["7 days", "after 7 days", "7"]),
    ("plans", ("How much does the Growth plan cost per month?",
               "What is the monthly price of the Growth plan?"), ["$79", "$79 a month", "79"]),
    ("plans", ("How much is the Pro plan a month?",
               "What does the Pro plan cost each month?"), ["$149", "$149 a month", "149"]),
    ("annual", ("What discount do I get for paying a year up front?",
                "How many months are free with annual billing?"), ["two months free", "two months", "2 months"]),
    ("invoices", ("On which day of the month are invoices issued?",
                  "When does Larkspur send the monthly invoice?"), ["the 1st", "1st", "the 1st of each month"]),
    ("methods", ("Which kind of bank transfer does Larkspur accept?",
                 "Can I pay by bank transfer, and which kind?"), ["ACH", "ACH bank transfers", "ACH transfers"]),
    ("retries", ("How many days after a failed payment is the first retry?",
                 "When does Larkspur first retry a failed payment?"), ["3 days", "after 3 days", "3"]),
    ("reset", ("How long is a password reset link valid?",
               "When does a password reset link expire?"), ["30 minutes", "after 30 minutes"]),
    ("two_factor", ("For how long is a two-factor code valid?",
                    "How many seconds does a two-factor code last?"), ["60 seconds", "60"]),
    ("lockout", ("How many failed sign-in attempts lock an account?",
                 "After how many wrong passwords is my account locked?"), ["5", "five", "5 failed sign-in attempts"]),
    ("lockout", ("How long does a locked account stay locked?",
                 "For how many minutes is an account locked after too many failed sign-ins?"),
     ["15 minutes", "15"]),
    ("report", ("Which email address takes reports of suspicious activity?",
                "Where do I report a phishing email?"), ["security@larkspur.example"]),
    ("report", ("How fast does the security team answer a report?",
                "Within how long does Larkspur security respond to a report of suspicious logins?"),
     ["1 hour", "within 1 hour", "one hour"]),
    ("pairing", ("How long must the Reader's power button be held to pair it?",
                 "For how many seconds do I hold the power button to pair the Larkspur Reader?"),
     ["8 seconds", "8"]),
    ("pairing", ("What colour does the Reader's light blink when it is ready to pair?",
                 "Which colour blinks on the Larkspur Reader during pairing?"), ["blue", "blinks blue"]),
    ("blank", ("Why does my receipt printer print blank receipts?",
               "What causes blank receipts?"), ["the paper roll is in upside down", "the paper roll is upside down",
                                                "paper roll upside down"]),
    ("blank", ("What width of paper roll does the Larkspur Printer take?",
               "Which roll size fits the receipt printer?"), ["80 mm", "80 mm thermal rolls", "80 mm thermal"]),
    ("scanner_reset", ("Which barcode resets the scanner to factory settings?",
                       "How do I factory reset the Larkspur Scanner?"), ["RESET-ALL", "the RESET-ALL barcode"]),
    ("kiosk_restart", ("At what time does the Kiosk restart to install updates?",
                       "When does the Larkspur Kiosk restart every night?"),
     ["3 am", "at 3 am", "every night at 3 am"]),
    ("payroll_price", ("How much does Larkspur Payroll cost per employee?",
                       "What is the price of the payroll add-on?"), ["$6 per employee per month", "$6",
                                                                     "$6 per employee"]),
    ("approval", ("How many business days before payday must a payroll run be approved?",
                  "What is the deadline for approving payroll?"), ["two business days", "2 business days",
                                                                    "two business days before payday"]),
    ("tax_forms", ("Which form does Larkspur Payroll file for contractors?",
                   "What tax form do contractors get from Larkspur Payroll?"), ["1099", "1099 forms"]),
    ("who_cancels", ("Who can cancel a Larkspur plan?",
                     "Can a staff account cancel the subscription, and if not who can?"),
     ["the account owner", "account owner", "only the account owner"]),
    ("retention", ("How long is data kept after an account is closed?",
                   "For how many days does Larkspur keep data of a closed account?"), ["90 days", "90"]),
    ("warranty_length", ("How long is the hardware warranty?",
                         "What warranty comes with Larkspur hardware?"),
     ["2 years", "2-year", "a 2-year limited warranty"]),
    ("kiosk_screen", ("How long is the Kiosk touchscreen covered?",
                      "What is the warranty on the Larkspur Kiosk's touchscreen?"), ["1 year", "1 year only"]),
    ("liquid", ("Does the warranty cover liquid damage?",
                "Is a Terminal with water damage covered by the warranty?"), ["no", "not covered"]),
    ("claim", ("How soon does Larkspur send a return label for a warranty claim?",
               "Within how many business days is the prepaid return label emailed?"),
     ["2 business days", "within 2 business days", "2"]),
    ("terminal_spec", ("How big is the Larkspur Terminal's screen?",
                       "What size is the Terminal's display?"), ["10.1-inch", "10.1 inches", "10.1"]),
    ("reader_battery", ("How many transactions does the Reader's battery last per charge?",
                        "How long does a Larkspur Reader charge last?"),
     ["about 500 transactions", "500", "about 500"]),
    ("printer_speed", ("How fast does the Larkspur Printer print?",
                       "What is the print speed of the receipt printer?"), ["250 mm per second", "250 mm",
                                                                           "250 mm of receipt per second"]),
    ("kiosk_spec", ("How big is the Kiosk's touchscreen?",
                    "What size screen does the Larkspur Kiosk have?"), ["21.5-inch", "21.5 inches", "21.5"]),
]


# -- rendering ----------------------------------------------------------------------------------


def markdown(document: Document) -> str:
    parts = [f"# {document.title}"]
    for section in document.sections:
        parts.append(f"## {section.heading}")
        parts.extend(fact.text for fact in section.facts)
    return "\n\n".join(parts) + "\n"


def html_page(document: Document) -> str:
    """A help-centre export: navigation and a script around the article (the reader drops both)."""
    body = [f"<h1>{html.escape(document.title)}</h1>"]
    for section in document.sections:
        body.append(f"<h2>{html.escape(section.heading)}</h2>")
        body.extend(f"<p>{html.escape(fact.text)}</p>" for fact in section.facts)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
            f"<title>{html.escape(document.title)} | Larkspur Help</title></head>\n<body>\n"
            "<nav><a href=\"/\">Help centre</a> &gt; <a href=\"/hardware\">Hardware</a></nav>\n"
            "<article>\n" + "\n".join(body) + "\n</article>\n"
            "<script>window.helpCentre = {section: \"hardware\"};</script>\n</body>\n</html>\n")


def json_records(document: Document) -> str:
    """One record per paragraph: the reader takes `title` as its heading and `text` as its text."""
    records = [{"title": section.heading, "text": fact.text}
               for section in document.sections for fact in section.facts]
    return json.dumps(records, ensure_ascii=False, indent=2) + "\n"


def every_document() -> list[Document]:
    return [*DOCUMENTS, WARRANTY, SPECS]


def qa_rows() -> list[dict]:
    where: dict[str, tuple[str, int]] = {}
    for document in every_document():
        for index, fact in enumerate(document.paragraphs()):
            if fact.key in where:
                raise ValueError(f"fact key {fact.key!r} is used twice")
            where[fact.key] = (document.name, index)
    rows = []
    for key, phrasings, answers in QUESTIONS:
        document, paragraph = where[key]
        text = next(f.text for d in every_document() for f in d.paragraphs() if f.key == key)
        # The generator's own guard: an accepted answer is written, as is, in the gold paragraph.
        if not any(answer.lower() in text.lower() for answer in answers):
            raise ValueError(f"no accepted answer to {phrasings[0]!r} is in the paragraph of {key!r}")
        for question in phrasings:
            rows.append({"input": question, "output": answers[0], "answers": answers,
                         "source": {"document": document, "paragraph": paragraph}})
    return rows


def write(docs: Path, qa_file: Path) -> tuple[int, int]:
    docs.mkdir(parents=True, exist_ok=True)
    for document in DOCUMENTS:
        (docs / document.name).write_text(markdown(document), encoding="utf-8", newline="\n")
    (docs / WARRANTY.name).write_text(html_page(WARRANTY), encoding="utf-8", newline="\n")
    (docs / SPECS.name).write_text(json_records(SPECS), encoding="utf-8", newline="\n")
    rows = qa_rows()
    qa_file.parent.mkdir(parents=True, exist_ok=True)
    with qa_file.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(every_document()), len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write DIR/docs/ and DIR/qa.jsonl (default: docs/ and data/ here)")
    args = parser.parse_args(argv)
    if args.out:
        docs, qa_file = args.out / "docs", args.out / "qa.jsonl"
    else:
        docs, qa_file = HERE / "docs", HERE / "data" / "qa.jsonl"
    n_docs, n_rows = write(docs, qa_file)
    print(f"wrote {n_docs} documents to {docs} and {n_rows} questions to {qa_file}")


if __name__ == "__main__":
    main()
