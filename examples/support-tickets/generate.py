#!/usr/bin/env python3
"""Generate the bundled example: synthetic support tickets for Larkspur, a fictional company
that sells point-of-sale software (plans, a web dashboard, a mobile app, a payroll add-on)
and the hardware around it (terminals, card readers, printers, scanners, kiosks).

Everything here is invented: the company, its products, customers, shops, order ids and the
wording of every ticket come from the templates and vocabularies in this file. Standard
library only, seeded, no clock and no set iteration, so two runs write byte-identical files.

    python examples/support-tickets/generate.py            # writes data/ next to this file
    python examples/support-tickets/generate.py --out DIR  # writes DIR/tickets*.jsonl

It then runs generate_docs.py: the help-centre documents (docs/) and the questions about
them (data/qa.jsonl) of task-qa.yaml; with --out, DIR/docs/ and DIR/qa.jsonl.

Two files, the same tickets in the same order:
  tickets.jsonl          {"input": ticket, "output": queue}                     (task.yaml)
  tickets-extract.jsonl  {"input": ticket, "output": JSON string of the fields}  (task-extract.yaml)

How the ground truth is decided (the same rules the task cards give a model):
  queue          the queue of the ticket's main issue; a second, minor issue ("Also, ...")
                 does not change it.
  product        the one Larkspur product the ticket names, in its canonical form, or null.
                 Plans (Starter, Growth, Pro) are not products.
  order_id       the order id, normalised to LK-123456, or null. Invoice numbers (INV-...)
                 and tracking numbers are not order ids.
  urgency        high when the customer says it is urgent (or for any security concern),
                 low when they say there is no rush (and for every feature request),
                 otherwise normal.
  customer_name  the writer's name as written (the fullest form they give), or null. Shop
                 names and the names of staff they mention are not the customer's name.

Real support traffic is not clean, and `tunewise check` should have something to find:
a handful of tickets sent twice (exact duplicates), a few re-sent with small edits
(near-duplicates), and three ambiguous tickets that two agents routed differently (the same
text with two labels). Every row is still valid: it loads, and every extract output
satisfies schema.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

SEED = 1729
N_ROWS = 1500
N_EXACT_DUPLICATES = 8
N_NEAR_DUPLICATES = 8

# Queues with their share of traffic: billing and bugs frequent, security rare.
QUEUE_SHARE = {
    "billing": 0.22,
    "bug_report": 0.21,
    "account_access": 0.13,
    "shipping_delay": 0.12,
    "refund_request": 0.11,
    "cancellation": 0.08,
    "feature_request": 0.08,
    "security_concern": 0.05,
}
QUEUES = list(QUEUE_SHARE)

# canonical name -> (kind, surface forms a customer writes)
PRODUCTS = {
    "Larkspur Terminal": ("hw", ["Terminal", "Larkspur Terminal", "terminal", "POS terminal", "Larkspur terminal"]),
    "Larkspur Reader": ("hw", ["Reader", "card reader", "Larkspur Reader", "reader", "Larkspur card reader"]),
    "Larkspur Printer": ("hw", ["receipt printer", "Larkspur Printer", "printer", "Printer"]),
    "Larkspur Scanner": ("hw", ["barcode scanner", "Larkspur Scanner", "scanner", "Scanner"]),
    "Larkspur Kiosk": ("hw", ["Kiosk", "self-order kiosk", "Larkspur Kiosk", "kiosk"]),
    "Larkspur Dashboard": ("app", ["Dashboard", "Larkspur Dashboard", "dashboard", "web dashboard"]),
    "Larkspur Go": ("app", ["Larkspur Go", "Go app", "Larkspur Go app", "larkspur go app"]),
    "Larkspur Payroll": ("addon", ["Payroll", "Larkspur Payroll", "payroll add-on", "Payroll add-on"]),
}
PRODUCT_SLOTS = {
    "hw": [p for p, (kind, _) in PRODUCTS.items() if kind == "hw"],
    "app": [p for p, (kind, _) in PRODUCTS.items() if kind == "app"],
    "addon": ["Larkspur Payroll"],
    "prod": list(PRODUCTS),
    "p_terminal": ["Larkspur Terminal"],
    "p_reader": ["Larkspur Reader"],
    "p_printer": ["Larkspur Printer"],
    "p_scanner": ["Larkspur Scanner"],
    "p_kiosk": ["Larkspur Kiosk"],
    "p_dashboard": ["Larkspur Dashboard"],
    "p_go": ["Larkspur Go"],
    "p_payroll": ["Larkspur Payroll"],
}
URGENCIES = ["low", "normal", "high"]
ORDER_ID_PATTERN = r"^LK-[0-9]{6}$"

# -- vocabularies -------------------------------------------------------------------------

FIRST_NAMES = [
    "Maria", "James", "Aisha", "Tom", "Priya", "Wei", "Fatima", "Lucas", "Emma", "Diego", "Hannah",
    "Kwame", "Sofia", "Noah", "Yuki", "Omar", "Chloé", "Liam", "Ananya", "Mateo", "Olivia", "Ibrahim",
    "Grace", "Hiro", "Zoë", "Daniel", "Leila", "Ben", "Ngozi", "Sven", "Rosa", "Arjun", "Mei", "Jack",
    "Amara", "Marco", "Inês", "Tariq", "Sarah", "Kofi", "Elena", "Raj", "Nadia", "Pablo", "Ruth",
    "Dmitri", "Léa", "Sam", "Jin", "Carmen", "Oscar", "Freya", "Tunde", "Isabel", "Kai", "Anika",
    "Mohammed", "Beth", "Luis", "Hana", "Søren", "Agnieszka", "Connor", "Thandiwe",
]
LAST_NAMES = [
    "Garcia", "Okafor", "Chen", "Nguyen", "Patel", "Müller", "Smith", "Kowalski", "Rossi", "Haddad",
    "Johnson", "Tanaka", "Silva", "O'Brien", "Novak", "Mensah", "Dubois", "Kim", "Hernández", "Larsen",
    "Ahmed", "Brown", "Schmidt", "Costa", "Ivanova", "Walsh", "Yılmaz", "Sato", "Kaur", "Andersen",
    "Moreau", "Nowak", "Reyes", "Bauer", "Sharma", "Fischer", "Lopez", "Murphy", "Ali", "Wright",
    "Jensen", "Santos", "Park", "Cohen", "Byrne", "Lindqvist", "Osei", "Ferreira", "Quinn", "Dlamini",
]
SHOPS = [
    "Blue Door Bakery", "Marigold Café", "Two Rivers Hardware", "Pine & Pepper", "Hollow Oak Books",
    "The Daily Grind", "Copper Kettle Diner", "Salt Street Tacos", "Fernwood Florist", "Northside Cycles",
    "Little Fig Deli", "Saltwater Surf Co", "Bramble & Bloom", "Red Lantern Noodles", "Juniper Yoga",
    "The Crooked Spoon", "Harbor Light Coffee", "Wildflower Gifts", "Stonebridge Pizza", "Velvet Scoop",
    "Mosaic Records", "Olive Branch Market", "Tin Roof Brewing", "Cedar & Sage Salon", "Paper Moon Stationery",
    "Golden Crust Pies", "Riverbend Pet Supply", "Lemon Tree Kitchen", "Night Owl Books", "Sunny Side Bagels",
    "Birch Lane Boutique", "Half Moon Wine Bar", "The Green Pantry", "Quarry Street Barbers", "Kettle & Crumb",
]
BUSINESSES = [
    "coffee shop", "bakery", "bike shop", "bookshop", "taco place", "florist", "hair salon", "wine bar",
    "food truck", "gift shop", "pizzeria", "ice cream shop", "hardware store", "yoga studio", "record store",
]
CITIES = [
    "Portland", "Leeds", "Austin", "Melbourne", "Toronto", "Dublin", "Denver", "Lisbon", "Cape Town",
    "Manchester", "Auckland", "Chicago", "Vancouver", "Bristol", "Sacramento", "Halifax", "Glasgow",
]
LOGIN_CITIES = ["Bucharest", "São Paulo", "Jakarta", "Frankfurt", "Lagos", "Hanoi", "Warsaw", "Osaka", "Lima"]
CARRIERS = {"Parcelwise": "PW", "Kestrel Post": "KP", "NorthLine Express": "NL", "BlueRoute": "BR"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
MONTHS_SHORT = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
ORDINALS = {1: "1st", 2: "2nd", 3: "3rd", 21: "21st", 22: "22nd", 23: "23rd"}
PLANS = ["Starter", "Growth", "Pro"]
PLAN_PRICES = ["$29.00", "$79.00", "$149.00", "$39.00", "$59.00", "$599.00", "$1,299.00", "$158.00",
               "$348.00", "$948.00"]
ERRORS = ["E-1042", "E-2210", "SYNC-TIMEOUT", "LKS-401", "PAY-017", "ERR 503", "E-3307", "NET-12"]
VERSIONS = ["4.12.1", "4.12.3", "4.13.0", "5.0.2", "5.1.0", "5.1.4"]
DEVICES = ["iPad", "an iPad Air", "an Android tablet", "a Samsung tablet", "iPhone 13", "a Pixel phone",
           "a Windows laptop", "an old iPad mini"]
BROWSERS = ["Chrome", "Safari", "Firefox", "Edge"]
PROMOS = ["SPRING20", "WELCOME3", "LARK10", "BFCM25", "NEWSHOP15"]
FAKE_SENDERS = ["support@larkspur-billing.com", "security@larksprr.com", "help@larkspur-payments.net",
                "accounts@larkspurpos-verify.com"]
NO_TAX_STATES = ["Oregon", "New Hampshire", "Delaware", "Montana"]
LANGUAGES = ["Spanish", "French", "Portuguese", "Vietnamese", "Polish", "Tagalog", "Arabic"]
EMOJI = {"high": ["🙏", "😡", "😤", "😩", "‼️"], "normal": ["🙏", "🙂", "👍", "🤞", "😅", "🙃", "📦", "💸"],
         "low": ["🙂", "👍", "❤️", "😊"]}

# -- templates ------------------------------------------------------------------------------
# [a|b|c] picks one alternative (an empty one is allowed); {slot} is filled per ticket.
# Each ticket names at most one product: a template uses one product slot at most, and the
# other parts of a ticket (details, second issues, subjects) name no product at all.

BODIES = {
    "billing": [
        "I was [charged|billed] twice for [my|our] {plan} plan this month, two charges of {amount} on {date}. [Can you check what happened?|What's going on?|Can you look into it?]",
        "My invoice for {month} shows {amount} but the {plan} plan is supposed to be {amount2}. [Why the difference?|What am I missing?|Can you explain?]",
        "How do I update the [credit card|card|payment method] on file? The old one expires [this month|next week|soon].",
        "I need an invoice with our company name and VAT number on it for {month}. [Our accountant is asking for it.|Accounting needs it for the books.|It's for our tax return.]",
        "There's a charge of {amount} on our [bank statement|card statement|statement] from Larkspur that I don't recognise. Can you tell me what it's for?",
        "We upgraded from {plan2} to {plan} in the middle of the month and got billed {amount}. How is the proration [calculated|worked out]?",
        "My [payment|subscription payment] [failed|was declined] but the card works everywhere else. Can you [try it again|retry the charge]?",
        "Can I switch from monthly to annual billing? [Is there a discount?|How much would we save?|Is it cheaper?]",
        "The discount code {promo} [didn't get|wasn't] applied to [my last invoice|invoice {invoice}].",
        "Where can I download [past|old|previous] invoices? I need [all of|the ones from] last year for taxes.",
        "Why did my bill go up this month? It used to be {amount2} and now it's {amount}.",
        "I'm being charged for {n} [staff seats|registers|locations] but we only have {n2}.",
        "Please add our tax ID to future invoices and resend invoice {invoice}.",
        "The processing fees on [last week's|yesterday's|our latest] payout look higher than the rate we signed up for.",
        "Our payout from {date} hasn't landed in our bank account yet. Larkspur says it was sent.",
        "I got charged {amount} for the {addon} but I thought it was included in {plan}.",
        "Can you explain the {amount} line on invoice {invoice}? It says 'hardware installment'.",
        "We bought a {hw} on the payment plan. How many [installments|payments] are left?",
        "Please change the billing email to {email}. [Invoices are going to someone who left.|Our old bookkeeper is still getting them.]",
        "Do you offer nonprofit pricing? We're a [community café|charity shop|volunteer-run bookshop] on the {plan} plan.",
        "Our card was charged on {date} even though the invoice said it was due on {date2}.",
        "I need a copy of the receipt for order {order} for my expense report.",
        "How do I pay by bank transfer instead of card?",
        "Sales tax is being added to our subscription and I don't think it should be, we're in {state}.",
        "What's the difference in price between {plan2} and {plan}? [Thinking about switching.|We might move up.]",
        "The invoice {invoice} lists the wrong business address. Can you correct it?",
    ],
    "refund_request": [
        "I returned the {hw} from order {order} on {date} and still haven't got my refund. [Can you check?|When will it be processed?|Where is it?]",
        "Please refund the duplicate charge of {amount} from {date}.",
        "The {hw} [I|we] received doesn't do what we need. I'd like to return it for a full refund, order {order}.",
        "We were charged {amount} for the {addon} after we stopped using it. I'd like that refunded please.",
        "Can I get my money back for order {order}? [The {hw}|It] arrived [damaged|with a cracked screen|missing its cable|already opened].",
        "I was billed for a full year of {plan} by mistake, I only wanted monthly. Please refund the difference ({amount}).",
        "Requesting a refund for order {order}. We ordered {n} of the {hw} but only need {n2}.",
        "Your return policy says 30 days. We're on day {days}, how do I send back the {hw} and get [refunded|my money back]?",
        "I'd like a refund for last month's subscription ({amount}), we couldn't take payments for most of the week.",
        "The refund for {order} was approved on {date} but it's not on my card yet. How long does it take?",
        "I was charged {amount} after my trial ended. I never meant to sign up, please [reverse it|refund it|give it back].",
        "Could you refund the shipping fee on {order}? [You promised free shipping over $100.|The site said shipping was free.]",
        "Please issue a refund to the original card for order {order}, [we changed our minds|we found a local supplier] within an hour of ordering.",
        "We paid {amount} for setup help that never happened. [Can we have that back?|Please refund it.]",
        "I'd like to return the unused {hw} and get a refund. [It's still sealed.|Never even plugged it in.]",
        "You charged me {amount} twice for order {order}. Please refund one of them.",
    ],
    "shipping_delay": [
        "My order {order} was supposed to arrive on {date} and it's still not here. [Any update?|Where is it?|Can you check?]",
        "Tracking for {order} hasn't updated in {days} days. It just says 'label created'.",
        "We ordered a {hw} ({order}) {days} days ago and it still hasn't shipped. [What's the hold-up?|Is there a delay?]",
        "{carrier} tracking {tracking} says delivered but nothing came. Order {order}.",
        "Order {order} has been stuck in [customs|transit|the depot in {city}] for over a week.",
        "Only part of order {order} arrived, the {hw} is missing. [Is it coming separately?|Was it shipped on its own?]",
        "When will the {hw} be back in stock? My order {order} shows backordered.",
        "Can you give me an ETA for order {order}? The confirmation email said {n} business days and it's been {days}.",
        "My package from Larkspur is late. Order number is {order}.",
        "The delivery date for {order} keeps getting pushed back. First it was {date}, now it says {date2}.",
        "Still waiting on my {hw}. Ordered {date}, order {order}.",
        "{carrier} says the address is incomplete for order {order}, but it's the same address we always use.",
        "We paid for express shipping on {order} and it's been {days} days. [That's not express.|Where is it?]",
        "The {hw} we ordered hasn't shown up yet. It's been over {weeks} weeks.",
        "Could you check on order {order}? The tracking link gives an error and nothing has arrived.",
        "Our order hasn't arrived and I can't find the order number, it was placed on {date} for a {hw}.",
    ],
    "account_access": [
        "I can't log in to the {app}. It says my password is wrong but I [just|literally just] reset it.",
        "The password reset email never arrives. I've checked spam. My login is {email}.",
        "I got a new phone and lost my two-factor codes, now I'm locked out of my account.",
        "My account got locked after too many [attempts|login attempts|tries]. How do I unlock it?",
        "My employee {staff} can't sign in to the {app}, it says the invite link expired.",
        "I changed my email to {email} and now I can't get into the {app} with either address.",
        "Signing in with single sign-on just spins forever on the {app}.",
        "It keeps saying 'account not found' when I try to log in, but we've been customers for {n} years.",
        "I'm the owner but I only have staff permissions now, I can't [see|open] settings.",
        "How do I transfer account ownership? The previous owner left and we can't log in as them.",
        "The verification code text never comes through to my phone ending in {last4}.",
        "I got logged out of the {app} on every device and now it won't accept my password.",
        "I'm stuck in a loop: log in, enter the code, and it sends me back to the login page.",
        "How do I reset the admin PIN? Nobody remembers it and we can't get into the settings.",
        "I can sign in on my laptop but the {app} on my phone says 'invalid credentials'.",
        "Our manager {staff} left and she was the only admin. How do we get back into the account?",
    ],
    "bug_report": [
        "The {p_reader} [won't|doesn't] pair with the iPad anymore. We've restarted both twice.",
        "Receipts come out blank from the {p_printer}. [The paper is loaded the right way.|We changed the paper roll.]",
        "The {p_go} crashes as soon as I open the reports tab. Version {version} on {device}.",
        "Sales totals in the {p_dashboard} don't match our end-of-day report. Off by {amount}.",
        "The {p_scanner} reads some barcodes but not others, mostly the labels we print ourselves.",
        "We took {n} payments in offline mode [during an internet outage|when the wifi dropped] and they never synced.",
        "Getting error {error} when I try to export [sales|items|customers] to CSV.",
        "The {p_kiosk} freezes on the payment screen and [customers give up|we have to restart it].",
        "Tips are being calculated on the total after tax instead of before. That's not what our settings say.",
        "Since the last update ({version}) the {p_terminal} restarts by itself a few times a day.",
        "The {p_dashboard} just shows a blank white page in {browser}.",
        "Inventory counts go negative when we sell items that are [definitely|clearly] in stock.",
        "Discounts are applied twice when an order has more than {n} items.",
        "The {p_reader} battery drains in a couple of hours even when it's not being used.",
        "Our {p_printer} prints every receipt twice.",
        "The {p_payroll} calculated overtime wrong for {staff}, it shows {n} hours instead of {n2}.",
        "Kitchen tickets aren't printing for online orders, only for in-store ones.",
        "Tap payments with phones fail on the {p_reader} but chip cards work fine.",
        "Digital receipts are going out with the wrong shop name on them.",
        "The {p_go} shows yesterday's sales as zero even though we had {n}0 transactions.",
        "The screen on the [{p_terminal}|{p_kiosk}] flickers and sometimes goes black.",
        "Error {error} pops up every time we try to void a sale.",
        "Searching for an item by name finds nothing unless I type the exact name.",
        "Modifiers like [extra shot|oat milk|no onions] don't show up on the kitchen receipt.",
        "The {p_terminal} is stuck on the Larkspur logo after the update.",
        "Customer display shows the previous customer's total [for a few seconds|until you tap it].",
        "Sync error {error} on the {p_terminal} every morning when we open.",
        "Every time I add a new item in the {p_dashboard}, the price resets to $0.00.",
        "The {p_scanner} beeps but nothing gets added to the sale.",
        "Gift receipts print the prices, they shouldn't.",
    ],
    "feature_request": [
        "It would be great if the {p_dashboard} had a dark mode, [we|I] [work late|close late] and it's really bright.",
        "Any plans to support splitting a bill between [several|multiple] cards? Customers ask for it [all the time|every day].",
        "Can you add a report that compares sales across all our locations?",
        "Please add an export to [our accounting software|accounting apps], we still copy numbers by hand every week.",
        "We'd love to [put|print] our logo on [printed receipts|receipts].",
        "Could the {p_go} support {language}? [Half my staff would prefer it.|A lot of our team would use it.]",
        "Feature request: let us schedule staff shifts directly in Larkspur.",
        "[Would be nice|It would be nice|It'd be great] to bulk edit prices instead of changing one item at a time.",
        "Is there an API or webhooks for new orders? We want to connect our delivery system.",
        "Suggestion: a loyalty program where customers collect points [for every visit|on every purchase].",
        "It'd help if the {p_kiosk} could show photos of menu items.",
        "Can you make it possible to set different tax rates per item?",
        "We'd like low-stock alerts by email [so we can reorder in time|before we run out].",
        "Please let us customise the tip percentages shown on the {p_reader}.",
        "Will you ever support gift cards? [We get asked every week.|Customers keep asking.]",
        "Could the {p_payroll} handle tip pooling? Right now we do it in a spreadsheet.",
        "An idea: let customers order ahead from their phones and pick up at the counter.",
        "It would save us time if end-of-day reports were emailed automatically.",
    ],
    "cancellation": [
        "Please cancel our {plan} subscription at the end of this billing period.",
        "We're closing the shop at the end of {month}. How do I cancel everything?",
        "I want to cancel the {p_payroll}, we moved payroll to our accountant.",
        "Please don't renew our annual plan, it renews on {date}.",
        "Cancel order {order} please, we ordered the wrong {hw}.",
        "How do I close my Larkspur account and delete our data?",
        "We're switching to another provider. What's the process to cancel, and is there a fee?",
        "I'd like to cancel my account. [It's too expensive for a shop our size.|We're not using it enough.|We've gone back to a cash register.]",
        "I'd like to end my subscription. I sold the business on {date}.",
        "Please stop my subscription, we've closed [for good|permanently].",
        "Can you cancel order {order} before it ships? We don't need the {hw} after all.",
        "We'd like to cancel the {plan} plan. Our season is over and we won't reopen until spring.",
        "How do I cancel the trial before it turns into a paid plan?",
        "Please cancel the subscription for our second location, the first one stays.",
    ],
    "security_concern": [
        "I got a login alert from {login_city} but nobody on my team is there. Was my account accessed?",
        "We received an email that looks like it's from Larkspur asking for our bank details. Is it real? It came from {fake_sender}.",
        "There's a staff account called {staff} in our {p_dashboard} that none of us created.",
        "Our payout bank account was changed to one ending in {last4}. We didn't do that!",
        "A former employee still seems to have access, I saw their name on a void from {date}.",
        "I think I found a security problem in the {app}: [I can see another shop's customer emails|the export includes orders from another business]. Who do I report it to?",
        "I keep getting password reset emails I didn't ask for.",
        "Someone is calling our staff pretending to be Larkspur support and asking for the admin PIN.",
        "Our {p_terminal} was stolen from the counter last night. Is card data stored on it?",
        "Several refunds went out last night that none of us issued.",
        "I got a text with a link saying my Larkspur account is suspended. Is that from you?",
        "Someone added a new admin user to our account at 3am. It wasn't any of us.",
    ],
}

# One-liners: how people write in a chat widget or from a phone.
SHORT = {
    "billing": [
        "charged twice this month??", "need the invoice for {month} pls", "how do i change my card on file",
        "Why is my bill {amount} this month?", "Payment declined but my card is fine.", "Where do I find my invoices?",
        "what is the {amount} charge from {date}?", "update billing email to {email}", "Is there annual billing?",
        "Receipt for order {order} please.", "Why was I billed for {n} seats?", "promo code {promo} not applied",
        "Invoice {invoice} has the wrong address",
    ],
    "refund_request": [
        "refund for order {order} please", "I want my money back for the {hw}", "Where is my refund for {order}?",
        "pls refund the double charge of {amount}", "Refund status for {order}?",
        "Return and refund for the {hw}, it's not what we need", "want a refund, charged {amount} after trial",
        "need a refund for {order}",
    ],
    "shipping_delay": [
        "where is my order {order}", "Order {order} still not delivered", "tracking not updating for {order}",
        "Has {order} shipped yet?", "my {hw} hasn't arrived", "Late delivery, order {order}.",
        "package still not here {order}", "{hw} order still not here, it's been {days} days",
    ],
    "account_access": [
        "cant log in", "locked out of my account", "password reset email not coming",
        "lost my 2FA phone, how do I get back in?", "can't sign in to the {app}", "Login not working since this morning",
        "verification code never arrives", "forgot my password and the reset link is expired", "{app} says account not found",
    ],
    "bug_report": [
        "{p_go} keeps crashing", "{p_printer} not printing", "{p_reader} won't connect", "{p_dashboard} is just a blank page",
        "Sync error {error} on the {p_terminal}", "{p_scanner} stopped working", "reports show the wrong totals",
        "the {p_kiosk} is frozen again", "error {error} when exporting", "{p_go} crashes on {device}",
        "receipts printing twice", "{p_reader} wont take tap payments",
    ],
    "feature_request": [
        "dark mode please!", "pls add split bills", "Any chance of gift cards?", "Feature idea: multi-location reports",
        "would love bulk price editing", "{p_go} in {language} please", "can we get low stock alerts?",
        "suggestion: logo on receipts",
    ],
    "cancellation": [
        "cancel my subscription", "please cancel order {order}", "how do i cancel", "I want to close my account",
        "cancel the {p_payroll} please", "Don't renew my plan", "cancel our {plan} plan at the end of the month",
    ],
    "security_concern": [
        "suspicious login on my account from {login_city}", "got a phishing email pretending to be you",
        "someone changed our bank details!!", "unknown staff account in our {p_dashboard}",
        "getting password reset emails I didn't request",
    ],
}

# Extra sentences for longer tickets: no product names, so they never contradict the body.
DETAILS = {
    "billing": [
        "We've been on the {plan} plan since {year}.", "I've attached a screenshot.",
        "Our bookkeeper noticed it when reconciling.", "The card on file ends in {last4}.",
        "We're a small {biz}, so every bit counts.", "I looked in the billing settings but couldn't find it.",
    ],
    "refund_request": [
        "The box is unopened.", "I still have the original packaging.", "We paid with the card ending in {last4}.",
        "I'd prefer the refund to go back to the original card.", "I already sent it back with the prepaid label.",
    ],
    "shipping_delay": [
        "The address on the order is correct, I double-checked.", "Carrier is {carrier}, tracking {tracking}.",
        "Nobody has left a delivery note either.", "Other packages to this address arrive fine.",
        "The tracking page hasn't changed since {date}.",
    ],
    "account_access": [
        "I've tried two browsers and cleared cookies.", "My username is {email}.", "I'm the account owner.",
        "I already tried the forgot password link [twice|three times].", "It worked fine until {date}.",
    ],
    "bug_report": [
        "We've already restarted everything.", "It started after the update last night.",
        "It happens on all {n} of our registers.", "Screenshot attached.", "It happens about every {n}0 transactions.",
        "We're on version {version}.", "Turning it off and on again didn't help.",
    ],
    "feature_request": [
        "We've been customers for {n} years and love the product otherwise.",
        "I know a few other shop owners who'd want this too.", "Happy to test a beta.",
        "Right now we use a workaround but it's clunky.",
    ],
    "cancellation": [
        "Please confirm by email once it's done.", "We've been customers since {year}, thanks for everything.",
        "Let me know if there's anything I need to send back.", "The card on file ends in {last4}.",
    ],
    "security_concern": [
        "I've already changed my password.", "I turned on two-factor just now.",
        "I can forward the email if that helps.", "Nobody else has the admin login.",
    ],
}

# A minor second issue: "Also, ..." after the main one. No products, no order ids.
SECOND_ISSUES = {
    "billing": ["can you send me last month's invoice?", "my card on file needs updating at some point.",
                "why did the price go up this month?", "the last invoice had the wrong address on it."],
    "refund_request": ["I'm still waiting on a refund from last month.", "I never got the refund for the last return."],
    "shipping_delay": ["our last order took ages to arrive.", "the tracking link in the email doesn't work."],
    "account_access": ["one of my staff can't log in either, not sure if related.",
                       "password reset emails take forever to arrive."],
    "bug_report": ["the reports page is really slow to load.", "the app crashes now and then when I open settings.",
                   "receipts sometimes print twice."],
    "feature_request": ["it would be great to have dark mode!", "please add split bills someday.",
                        "gift cards would be a nice addition."],
    "cancellation": ["we might cancel the second location later this year."],
}
SECOND_CONNECTORS = ["Also, ", "Also ", "Unrelated, but ", "One more thing: ", "Oh and ", "Separately, ", "PS: "]

INTROS = [
    "This is {first} from {shop}.", "I'm {full}, owner of {shop}.", "I run {shop} in {city}.",
    "We're a small {biz} using Larkspur at {n} locations.", "Long-time customer here ({shop}).",
    "I manage the front counter at {shop}.", "My name is {full} and I own a {biz} in {city}.",
    "Writing on behalf of {shop}.",
]
GREETINGS = ["Hi", "Hello", "Hey", "Hi there", "Hello Larkspur team", "Hi support", "Good morning",
             "Dear Larkspur Support", "hey guys", "Hiya", "To whom it may concern", "Hi team", "Good afternoon"]
CLOSINGS = ["Thanks!", "Thank you.", "Thanks in advance.", "Appreciate it.", "Thanks for your help.", "Cheers",
            "thx", "Thanks so much!", "Any help appreciated."]
SIGN_OFFS = ["\n\nThanks,\n{sig}", " Thanks, {sig}", "\n- {sig}", "\n\nBest regards,\n{sig}\n{shop}",
             " -{sig}", "\n\n{sig}", "\n\nKind regards,\n{sig}", "\nCheers, {sig}", "\n\nThank you,\n{sig}",
             "\n\nBest,\n{sig}"]
SUBJECTS = {
    "billing": ["Question about my invoice", "Billing question", "Charge on my account", "Invoice"],
    "refund_request": ["Refund request", "Refund for {order}", "Return and refund"],
    "shipping_delay": ["Order {order} not arrived", "Where is my order?", "Delivery delay"],
    "account_access": ["Can't log in", "Locked out", "Login problem"],
    "bug_report": ["Problem with Larkspur", "Something's broken", "Bug", "Issue since the update"],
    "feature_request": ["Feature request", "Suggestion", "Idea for Larkspur"],
    "cancellation": ["Cancellation", "Cancel subscription", "Closing our account"],
    "security_concern": ["Security issue", "Suspicious activity", "Is this phishing?"],
}
HIGH_SUFFIXES = ["This is urgent.", "Please help ASAP!", "Need this sorted today please.", "Please treat this as urgent.",
                 "Can someone get back to me right away?", "this is really urgent!!", "Time sensitive, please respond quickly.",
                 "Please escalate, it's urgent.", "Urgent please."]
# Only where the problem stops the shop working.
HIGH_SUFFIXES_BLOCKED = ["We're losing sales because of this, please hurry.",
                         "Urgent please, we have a big event tomorrow.", "We can't take payments, this is urgent!"]
BLOCKING_QUEUES = ("bug_report", "account_access")
HIGH_PREFIXES = ["URGENT: ", "URGENT - ", "Urgent!! ", "ASAP: "]
LOW_SUFFIXES = ["No rush on this.", "Not urgent, whenever you get a chance.", "no hurry at all",
                "Low priority, just wanted to flag it.", "Whenever someone has time is fine.",
                "Not a big deal, just curious.", "No urgency here."]
MISSPELLINGS = {
    "receive": "recieve", "received": "recieved", "account": "acount", "password": "pasword",
    "separate": "seperate", "until": "untill", "subscription": "subscripton", "please": "pls",
    "thanks": "thx", "because": "becuase", "definitely": "definately", "invoice": "invoise",
    "business": "buisness", "address": "adress", "doesn't": "doesnt", "can't": "cant", "it's": "its",
    "already": "allready", "payment": "paymnet", "tomorrow": "tommorow", "you": "u", "really": "realy",
}


# -- rendering ------------------------------------------------------------------------------

ALT = re.compile(r"\[([^\[\]]*)\]")
SLOT = re.compile(r"\{(\w+)\}")
NAME_SLOTS = ("first", "full", "sig")
# Roles whose text is written by the customer as they type (typos, caps) - not the signature.
BODY_ROLES = ("subject", "greeting", "intro", "cue", "body", "detail", "second")


class Ticket:
    """One ticket being written: its slot values (drawn once, reused) and its parts."""

    def __init__(self, rng: random.Random, queue: str):
        self.rng = rng
        self.queue = queue
        self.vals: dict[str, str] = {}
        self.product: str | None = None
        self.order_id: str | None = None
        self.first = rng.choice(FIRST_NAMES)
        self.last = rng.choice(LAST_NAMES)
        self.shop = rng.choice(SHOPS)
        self.items: list[list] = []  # [text, slot or None, role]

    # slot values -----------------------------------------------------------------------
    def value(self, slot: str) -> str:
        if slot in PRODUCT_SLOTS:
            return self._product(slot)
        if slot not in self.vals:
            self.vals[slot] = self._draw(slot)
        return self.vals[slot]

    def _product(self, slot: str) -> str:
        allowed = PRODUCT_SLOTS[slot]
        if self.product is None:
            self.product = self.rng.choice(allowed)
            self.vals["product"] = self.rng.choice(PRODUCTS[self.product][1])
        elif self.product not in allowed:  # a template bug: two different products in one ticket
            raise AssertionError(f"{slot} after {self.product} in a {self.queue} ticket")
        return self.vals["product"]

    def _draw(self, slot: str) -> str:
        r = self.rng
        if slot == "order":
            digits = f"{r.randint(100000, 999999)}"
            self.order_id = f"LK-{digits}"
            return r.choices([f"LK-{digits}", f"#LK-{digits}", f"lk-{digits}", f"LK{digits}", f"LK {digits}",
                              f"#{digits}"], weights=[70, 10, 7, 6, 4, 3])[0]
        if slot == "first":
            return self.first
        if slot == "full":
            return f"{self.first} {self.last}"
        if slot == "sig":
            return self.vals.get("full") or r.choice([self.first, self.first, f"{self.first} {self.last}"])
        if slot == "staff":
            return r.choice([n for n in FIRST_NAMES if n != self.first])
        if slot == "shop":
            return self.shop
        if slot == "email":
            local = r.choice(["hello", "owner", "accounts", "orders", "info", "manager"])
            return f"{local}@{re.sub(r'[^a-z]', '', self.shop.lower())}.com"
        if slot in ("amount", "amount2"):
            other = self.vals.get("amount2" if slot == "amount" else "amount")
            while True:
                value = r.choice(PLAN_PRICES) if r.random() < 0.5 else f"${r.randint(12, 640)}.{r.choice(['00', '00', '50', '99', str(r.randint(10, 98))])}"
                if value != other:
                    return value
        if slot in ("plan", "plan2"):
            other = self.vals.get("plan2" if slot == "plan" else "plan")
            return r.choice([p for p in PLANS if p != other])
        if slot in ("date", "date2"):
            while True:
                m = r.randrange(12)
                d = r.randint(1, 28)
                value = r.choice([f"{MONTHS[m]} {d}", f"{MONTHS_SHORT[m]} {d}", f"{m + 1}/{d}", f"{d} {MONTHS[m]}",
                                  f"the {ORDINALS.get(d, f'{d}th')}", f"{MONTHS[m]} {ORDINALS.get(d, f'{d}th')}"])
                if value != self.vals.get("date"):
                    return value
        if slot == "month":
            return r.choice(MONTHS)
        if slot == "year":
            return str(r.randint(2017, 2024))
        if slot == "n":
            return str(r.randint(3, 9))
        if slot == "n2":
            return str(r.randint(1, int(self.value("n")) - 1))
        if slot == "days":
            return str(r.randint(6, 24))
        if slot == "weeks":
            return r.choice(["two", "three", "3", "2"])
        if slot == "invoice":
            return f"INV-{r.randint(10000, 99999)}"
        if slot == "carrier":
            return r.choice(list(CARRIERS))
        if slot == "tracking":
            prefix = CARRIERS[self.value("carrier")]
            return prefix + "".join(str(r.randint(0, 9)) for _ in range(10))
        if slot == "last4":
            return f"{r.randint(0, 9999):04d}"
        table = {"city": CITIES, "login_city": LOGIN_CITIES, "biz": BUSINESSES, "error": ERRORS,
                 "version": VERSIONS, "device": DEVICES, "browser": BROWSERS, "promo": PROMOS,
                 "fake_sender": FAKE_SENDERS, "state": NO_TAX_STATES, "language": LANGUAGES}
        return r.choice(table[slot])

    # writing parts ---------------------------------------------------------------------
    def add(self, template: str, role: str) -> None:
        text = ALT.sub(lambda m: self.rng.choice(m.group(1).split("|")), template)
        pos = 0
        for m in SLOT.finditer(text):
            if m.start() > pos:
                self.items.append([text[pos:m.start()], None, role])
            self.items.append([self.value(m.group(1)), m.group(1), role])
            pos = m.end()
        if pos < len(text):
            self.items.append([text[pos:], None, role])

    def text(self) -> str:
        return "".join(item[0] for item in self.items)


def urgency_for(rng: random.Random, queue: str) -> tuple[str, str | None]:
    """The ticket's urgency and which cue (if any) the customer writes."""
    if queue == "security_concern":
        return "high", ("high" if rng.random() < 0.35 else None)
    if queue == "feature_request":
        return "low", ("low" if rng.random() < 0.3 else None)
    roll = rng.random()
    if roll < 0.2:
        return "high", "high"
    if roll < 0.3:
        return "low", "low"
    return "normal", None


def write_ticket(rng: random.Random, queue: str) -> tuple[str, dict]:
    t = Ticket(rng, queue)
    style = rng.choices(["short", "medium", "long"], weights=[28, 47, 25])[0]
    urgency, cue = urgency_for(rng, queue)
    cue_prefix = cue == "high" and rng.random() < 0.35

    if style != "short" and rng.random() < 0.12:
        t.add("Subject: " + rng.choice(SUBJECTS[queue]), "subject")
        t.add("\n\n", "subject")
    if rng.random() < {"short": 0.15, "medium": 0.8, "long": 0.95}[style]:
        t.add(rng.choice(GREETINGS), "greeting")
        t.add(rng.choice([",\n\n", ",\n", "! ", ", ", " - ", "\n\n", " "]), "greeting")
    if rng.random() < {"short": 0.0, "medium": 0.15, "long": 0.55}[style]:
        t.add(rng.choice(INTROS) + " ", "intro")
    if cue_prefix:
        t.add(rng.choice(HIGH_PREFIXES), "cue")

    second = None
    if style != "short" and queue != "security_concern" and rng.random() < 0.13:
        second = rng.choice([q for q in SECOND_ISSUES if q != queue])
    if second and rng.random() < 0.25:  # the minor issue first, then the main one, said so
        t.add(rng.choice(["Small thing first: ", "Quick one first: "]) + rng.choice(SECOND_ISSUES[second]), "second")
        t.add(rng.choice([" But the main reason I'm writing: ", " The main thing though: ", "\n\nMain issue: "]), "second")
        second = None
    t.add(rng.choice(SHORT[queue] if style == "short" else BODIES[queue]), "body")
    if style == "long":
        for detail in rng.sample(DETAILS[queue], k=rng.choice([1, 1, 2])):
            t.add(rng.choice([" ", " ", "\n\n"]) + detail, "detail")
    if second:
        t.add(rng.choice([" ", "\n\n"]) + rng.choice(SECOND_CONNECTORS) + rng.choice(SECOND_ISSUES[second]), "second")
    if cue == "high" and not cue_prefix:
        suffixes = HIGH_SUFFIXES + (HIGH_SUFFIXES_BLOCKED if queue in BLOCKING_QUEUES else [])
        t.add(rng.choice([" ", " ", "\n\n"]) + rng.choice(suffixes), "cue")
    elif cue == "low":
        t.add(rng.choice([" ", " ", "\n\n"]) + rng.choice(LOW_SUFFIXES), "cue")
    if rng.random() < 0.07:
        t.add(" " + rng.choice(EMOJI[urgency]), "cue")

    if style == "short":
        if rng.random() < 0.1:
            t.add(rng.choice([" - {sig}", " thx {sig}", " ({first})"]), "signoff")
    elif rng.random() < {"medium": 0.5, "long": 0.8}[style]:
        t.add(rng.choice(SIGN_OFFS), "signoff")
    elif rng.random() < 0.5:
        t.add(rng.choice([" ", "\n\n"]) + rng.choice(CLOSINGS), "signoff")

    roughen(rng, t, style)
    text = re.sub(r"[ \t]+\n", "\n", t.text()).strip()
    names = [item[0] for item in t.items if item[1] in NAME_SLOTS]
    fields = {
        "queue": queue,
        "product": t.product,
        "order_id": t.order_id,
        "urgency": urgency,
        "customer_name": max(names, key=len) if names else None,
    }
    return text, fields


def roughen(rng: random.Random, t: Ticket, style: str) -> None:
    """Typos, misspellings, lowercase or ALL CAPS: never inside names, products or ids."""
    literal = [item for item in t.items if item[1] is None and item[2] in BODY_ROLES]
    if rng.random() < 0.14:
        words = [(item, m) for item in literal for m in re.finditer(r"[A-Za-z']{4,}", item[0])]
        for item, m in sorted(rng.sample(words, k=min(len(words), rng.choice([1, 1, 2, 3]))),
                              key=lambda pair: -pair[1].start()):
            word = m.group(0)
            item[0] = item[0][:m.start()] + typo(rng, word) + item[0][m.end():]
    if rng.random() < 0.12:
        for item in literal:
            item[0] = re.sub(r"[A-Za-z']+", lambda m: MISSPELLINGS.get(m.group(0), m.group(0))
                             if rng.random() < 0.6 else m.group(0), item[0])
    roll = rng.random()
    if roll < (0.2 if style == "short" else 0.06):  # lowercase, sloppy: everything, names included
        for item in t.items:
            item[0] = item[0].lower()
            if item[1] is None and rng.random() < 0.5:
                item[0] = item[0].replace("'", "")
        if t.items and t.items[-1][1] is None and t.items[-1][0].endswith("."):
            t.items[-1][0] = t.items[-1][0][:-1]
    elif roll > 0.97:  # ALL CAPS body, signature left as the mail client writes it
        for item in t.items:
            if item[2] in BODY_ROLES:
                item[0] = item[0].upper()


def typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(["swap", "drop", "double"])
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


# -- the noise a real export carries ---------------------------------------------------------

# Genuinely ambiguous tickets that two agents routed differently: same text, two labels.
CONFLICTS = [
    ("I cancelled our Growth plan last week but was still charged $79.00 today. I want that money back.",
     ["billing", "refund_request"], {"product": None, "order_id": None, "urgency": "normal", "customer_name": None}),
    ("Hi, I can't log in since I got your email about suspicious activity. Did someone get into my account? "
     "This is urgent.\n\nThanks,\nNadia Haddad",
     ["account_access", "security_concern"],
     {"product": None, "order_id": None, "urgency": "high", "customer_name": "Nadia Haddad"}),
    ("The card reader from order LK-530114 finally arrived two weeks late and now it won't pair with anything.",
     ["shipping_delay", "bug_report"],
     {"product": "Larkspur Reader", "order_id": "LK-530114", "urgency": "normal", "customer_name": None}),
]
RESEND_EDITS = [
    lambda s: "Sending this again since I haven't heard back:\n\n" + s,
    lambda s: s + " Thanks!",
    lambda s: s.rstrip(".!?") + "??",
    lambda s: _regreet(s),
    lambda s: s + "\n\n(2nd message)",
    lambda s: "Following up: " + s if not s.startswith("Subject:") else s + "\n\nAny update?",
]


def _regreet(text: str) -> str:
    for old, new in (("Hi there", "Hello"), ("Hello", "Hi"), ("Hi", "Hello"), ("Hey", "Hi")):
        if text.startswith(old):
            return new + text[len(old):]
    return text if text.startswith("Subject:") else "Hi, " + text


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def generate(seed: int = SEED) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    n_generated = N_ROWS - N_EXACT_DUPLICATES - N_NEAR_DUPLICATES - 2 * len(CONFLICTS)
    quotas = {q: round(share * n_generated) for q, share in QUEUE_SHARE.items()}
    quotas["billing"] += n_generated - sum(quotas.values())
    queues = [q for q in QUEUES for _ in range(quotas[q])]
    rng.shuffle(queues)

    rows: list[tuple[str, dict]] = []
    seen = {normalize(text) for text, _, _ in CONFLICTS}
    for queue in queues:
        for _ in range(200):  # templated one-liners collide now and then: write another
            text, fields = write_ticket(rng, queue)
            if normalize(text) not in seen:
                break
        else:
            raise RuntimeError(f"could not write a new {queue} ticket")
        seen.add(normalize(text))
        rows.append((text, fields))

    picks = rng.sample(range(len(rows)), N_EXACT_DUPLICATES + N_NEAR_DUPLICATES)
    extra = [rows[i] for i in picks[:N_EXACT_DUPLICATES]]
    for k, i in enumerate(picks[N_EXACT_DUPLICATES:]):
        text, fields = rows[i]
        edited = RESEND_EDITS[k % len(RESEND_EDITS)](text)
        extra.append((edited if edited != text else text + " Thanks!", fields))
    for text, labels, fields in CONFLICTS:
        extra += [(text, {"queue": label, **fields}) for label in labels]
    rows += extra
    rng.shuffle(rows)
    return rows


def check(rows: list[tuple[str, dict]]) -> None:
    """The generator's own guard: every truth value is visible in the ticket text."""
    for text, f in rows:
        low = text.lower()
        assert f["queue"] in QUEUES and f["urgency"] in URGENCIES, f
        assert f["order_id"] is None or (re.match(ORDER_ID_PATTERN, f["order_id"]) and f["order_id"][3:] in text), (text, f)
        assert f["product"] is None or any(s.lower() in low for s in PRODUCTS[f["product"]][1]), (text, f)
        for product, (_, surfaces) in PRODUCTS.items():  # no other product named in passing
            if product != f["product"]:
                assert not any(re.search(rf"\b{re.escape(s.lower())}\b", low) for s in surfaces), (product, text, f)
        assert f["customer_name"] is None or f["customer_name"] in text, (text, f)


def write(out: Path, rows: list[tuple[str, dict]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "tickets.jsonl").open("w", encoding="utf-8", newline="\n") as fc, \
            (out / "tickets-extract.jsonl").open("w", encoding="utf-8", newline="\n") as fe:
        for text, fields in rows:
            fc.write(json.dumps({"input": text, "output": fields["queue"]}, ensure_ascii=False) + "\n")
            target = json.dumps({k: fields[k] for k in ("queue", "product", "order_id", "urgency", "customer_name")},
                                ensure_ascii=False)
            fe.write(json.dumps({"input": text, "output": target}, ensure_ascii=False) + "\n")


DEFAULT_OUT = Path(__file__).resolve().parent / "data"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder to write tickets.jsonl and tickets-extract.jsonl into (default: data/ here)")
    parser.add_argument("--seed", type=int, default=SEED, help="change only to study another draw")
    args = parser.parse_args(argv)
    rows = generate(args.seed)
    check(rows)
    write(args.out, rows)
    print(f"wrote {len(rows)} tickets to {args.out}")
    # The help-centre documents and the questions about them (task-qa.yaml): generate_docs.py.
    # With --out, they go to OUT/docs/ and OUT/qa.jsonl; by default to docs/ and data/ here.
    import generate_docs

    generate_docs.main(["--out", str(args.out)] if args.out != DEFAULT_OUT else [])


if __name__ == "__main__":
    main()
