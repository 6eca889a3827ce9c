"""The text behind the sample generator: categories, conversation scripts and slot fillers.

A :class:`Category` is one label (``support.refund``); it has one or more :class:`Script` s whose
openers, first replies and follow-up exchanges all fit together, so any combination reads as a real
conversation. ``{slot}`` placeholders are filled per conversation (see ``sampledata._Slots``).
Everything here was written for this project.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Script:
    """One kind of conversation: a first user turn, a first reply, then paired (user, assistant) exchanges."""

    topic: str
    openers: tuple[str, ...]
    replies: tuple[str, ...]
    exchanges: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Category:
    label: str
    weight: float
    language: str
    scripts: tuple[Script, ...]

    @property
    def category(self) -> str:
        return self.label.split(".", 1)[0]


def _s(
    topic: str, openers: Iterable[str], replies: Iterable[str], exchanges: Iterable[tuple[str, str]]
) -> Script:
    return Script(topic, tuple(openers), tuple(replies), tuple(exchanges))


# fmt: off
SLOTS: dict[str, tuple[str, ...]] = {
    "product": ("Orbit Notes", "Lumen TV", "Cobalt Storage", "Pixel Planner", "Harbor Mail", "the mobile app",
                "the desktop app", "Nimbus Drive", "Beacon Fitness", "Quill Docs"),
    "company": ("Northwind", "Globex", "Initech", "Brightline", "Tidewater", "Redwood Labs", "Aperture Goods"),
    "device": ("iPhone", "Android phone", "laptop", "work PC", "iPad", "Chromebook", "MacBook"),
    "browser": ("Chrome", "Firefox", "Safari", "Edge"),
    "carrier": ("UPS", "FedEx", "DHL", "USPS", "the courier"),
    "item": ("pair of running shoes", "standing desk", "wireless headphones", "coffee grinder", "winter jacket",
             "phone case", "bookshelf", "baby stroller", "blender", "gaming chair", "rug", "desk lamp"),
    "plan": ("Basic", "Plus", "Pro", "Team", "Family"),
    "month": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December"),
    "pyerror": ("KeyError: 'user_id'", "TypeError: 'NoneType' object is not subscriptable",
                "ModuleNotFoundError: No module named 'requests'", "IndexError: list index out of range",
                "AttributeError: 'str' object has no attribute 'append'",
                "ValueError: invalid literal for int() with base 10: 'abc'",
                "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0",
                "RecursionError: maximum recursion depth exceeded"),
    "pylib": ("pandas", "requests", "Flask", "Django", "numpy", "FastAPI", "SQLAlchemy"),
    "pytask": ("reads a CSV and sums one column", "calls a REST API in a loop", "parses a config file",
               "scrapes a web page", "merges two dataframes", "processes uploaded images"),
    "image": ("postgres:16", "node:20-alpine", "python:3.12-slim", "nginx:latest", "redis:7", "mysql:8"),
    "docker_error": ("Bind for 0.0.0.0:5432 failed: port is already allocated", "no space left on device",
                     "permission denied while trying to connect to the Docker daemon socket",
                     "exec format error", "OCI runtime create failed: executable file not found in $PATH"),
    "table": ("orders", "customers", "invoices", "events", "users", "payments", "sessions"),
    "db": ("PostgreSQL", "MySQL", "SQLite", "SQL Server"),
    "sql_goal": ("get the top 5 customers by total spend", "count orders per month",
                 "find duplicate email addresses", "show the latest order for each customer",
                 "calculate a running total of revenue", "list customers who never ordered anything"),
    "net_symptom": ("my Wi-Fi keeps dropping every few minutes",
                    "I can't reach any website but ping to 8.8.8.8 works", "the VPN connects but nothing loads",
                    "my upload speed is a tenth of what I pay for",
                    "two devices on my network say there's an IP address conflict",
                    "I get DNS_PROBE_FINISHED_NXDOMAIN on some sites"),
    "router": ("TP-Link", "Netgear", "ASUS", "Ubiquiti", "Fritz!Box"),
    "server_app": ("Plex server", "Minecraft server", "home security camera", "Nextcloud instance", "game server"),
    "dish": ("lasagna", "chicken curry", "banana bread", "vegetable stir-fry", "mushroom risotto",
             "chili con carne", "pancakes", "lentil soup", "shakshuka", "pad thai", "apple pie", "fish tacos"),
    "ingredient": ("eggs", "butter", "heavy cream", "gluten", "onions", "peanuts", "dairy", "garlic"),
    "city": ("Lisbon", "Kyoto", "Barcelona", "Vienna", "Mexico City", "Vancouver", "Marrakech", "Prague",
             "Buenos Aires", "Edinburgh", "Seoul", "Cape Town", "Istanbul", "Reykjavik"),
    "traveller": ("my partner and me", "a family of four", "just me", "three friends", "my parents"),
    "job_doc": ("cover letter", "LinkedIn summary", "resignation letter", "personal statement"),
    "doc": ("wedding speech", "thank-you note to my team", "complaint letter to my landlord",
            "blog post about remote work", "grant proposal introduction", "newsletter intro"),
    "job": ("data analyst", "nurse", "project manager", "marketing coordinator", "software engineer", "teacher"),
    "tone": ("more formal", "friendlier", "shorter", "more confident", "less stiff"),
    "equation": ("3x + 7 = 22", "2(x - 4) = 3x + 1", "5x - 3 = 2x + 9", "x/4 + 2 = 7", "7 - 2x = 15"),
    "calc_problem": ("the derivative of x^2 * sin(x)", "the derivative of e^(3x) * cos(x)",
                     "the derivative of ln(x) / x", "the derivative of (x^2 + 1) * e^x"),
    "arith_problem": ("15% of 240", "(2/3) divided by (4/9)", "the area of a circle with radius 4",
                      "the slope between (1, 2) and (4, 11)", "30% off a $85 jacket", "the average of 12, 15 and 21"),
    "grade": ("7th grade", "8th grade", "high school algebra", "AP calculus", "pre-algebra"),
    "symptom": ("a headache that won't go away", "lower back pain", "a sore throat", "seasonal allergies",
                "heartburn after meals", "a sprained ankle", "a dry cough"),
    "medicine": ("ibuprofen", "paracetamol", "an antihistamine", "an antacid", "a decongestant"),
    "bank": ("First Harbor Bank", "PayFast", "a delivery company", "the tax office", "a streaming service"),
    "neighbor": ("my neighbor", "my coworker", "my ex", "my landlord", "a guy at the gym", "my roommate"),
    # Spanish, French, German, Portuguese fillers
    "es_item": ("unas zapatillas", "una lámpara", "un móvil", "una chaqueta", "unos auriculares"),
    "es_dish": ("una paella", "unas lentejas", "una tortilla de patatas", "un gazpacho", "unas croquetas"),
    "es_city": ("Sevilla", "Granada", "Valencia", "Bilbao", "Oaxaca", "Cusco"),
    "fr_item": ("une veste", "un aspirateur", "des chaussures", "une cafetière", "un casque audio"),
    "fr_dish": ("un bœuf bourguignon", "une quiche lorraine", "une ratatouille", "un gratin dauphinois",
                "une blanquette de veau"),
    "fr_city": ("Lyon", "Bordeaux", "Nice", "Strasbourg", "Québec", "Bruxelles"),
    "de_item": ("eine Kaffeemaschine", "einen Rucksack", "ein Fahrradschloss", "Winterstiefel", "einen Monitor"),
    "de_dish": ("Apfelstrudel", "Kartoffelsuppe", "Käsespätzle", "Zwiebelkuchen", "Rouladen"),
    "de_city": ("Hamburg", "Wien", "Dresden", "Zürich", "Freiburg", "Leipzig"),
    "pt_dish": ("uma feijoada", "um bacalhau à Brás", "uma moqueca", "um pão de queijo", "um escondidinho"),
    "pt_city": ("Porto", "Salvador", "Florianópolis", "Coimbra", "Recife", "Ouro Preto"),
}
# fmt: on

FIRST_NAMES = (
    "Alex",
    "Sam",
    "Priya",
    "Jordan",
    "Mei",
    "Carlos",
    "Fatima",
    "Lena",
    "Tom",
    "Aisha",
    "Diego",
    "Yuki",
)

# --------------------------------------------------------------------------------------------------
# Customer support

PASSWORD_RESET = _s(
    "password_reset",
    (
        "I forgot my password for {product} and the reset email never arrives.",
        "How do I reset my password? I'm locked out of {product} on my {device}.",
        "The password reset link says it has expired every time I click it.",
        "I changed my email address in {month} and now the password reset goes to the old one.",
        "Can you help me reset my password? I've tried three times and nothing happens.",
        "password reset isn't working, it says 'token invalid' when I open the link in {browser}",
        "I need to reset the password on my {company} account but I'm not sure which email I used.",
    ),
    (
        "I'm sorry you're having trouble signing in. Let's get your password reset. Reset links expire after 30 "
        "minutes and only the newest one works, so could you confirm the email address on the account? Please "
        "don't share your old password.",
        "Happy to help with that. First, please check your spam or promotions folder for a message from our "
        "no-reply address. Could you also tell me which email address you're using, so I can send a fresh link?",
    ),
    (
        ("It's {email}.", "Thanks. I've sent a new reset link to {email}. It's valid for 30 minutes."),
        (
            "There's nothing in spam either.",
            "Understood. Some email providers delay our messages by a few minutes. As a backup I can send a "
            "six-digit code by SMS to the phone number ending in {last4}.",
        ),
        (
            "Okay that worked, but now it says my new password is too weak.",
            "Passwords need at least 12 characters. A phrase of three or four unrelated words works well and is "
            "easier to remember.",
        ),
        (
            "Will resetting the password log me out on my other devices?",
            "Yes, for security every active session is signed out after a reset. You'll just sign in again with "
            "the new password.",
        ),
        (
            "I don't have access to that old email anymore.",
            "In that case we can verify you another way. I'll need the last four digits of the card on file and "
            "roughly when you created the account.",
        ),
    ),
)

BILLING_DISPUTE = _s(
    "billing_dispute",
    (
        "I was charged ${amount} twice this month for my {plan} subscription.",
        "Why is there a charge of ${amount} on my card from {company}? I don't remember signing up.",
        "My invoice for {month} shows the {plan} plan but I downgraded to Basic weeks ago.",
        "You billed me ${amount} after I cancelled. I want this charge reversed.",
        "There's a charge I don't recognise on my statement, reference {ticket}, can you explain it?",
        "I think I'm being overcharged, my bill went up to ${amount} without any notice.",
    ),
    (
        "I'm sorry about the confusion with your bill. Let me look into the charges on your account. Could you "
        "give me the date of the charge and the last four digits of the card?",
        "Thanks for flagging this, I understand how frustrating an unexpected charge is. Let me pull up your "
        "billing history. Which card was charged, and on what date?",
    ),
    (
        (
            "The card ends in {last4}, charged on {month} 3rd.",
            "Thanks. I can see the charge of ${amount}. It came from an automatic renewal that shouldn't have "
            "gone through, so I've refunded it. It will show on your statement in 5 to 10 business days.",
        ),
        (
            "I have the confirmation email from when I changed my plan.",
            "Thank you, I can see the change was recorded on our side too, so the invoice was wrong. I've "
            "corrected it and credited the difference to your card.",
        ),
        (
            "Can you at least explain why the price changed?",
            "Our {plan} plan's price changed at the start of the quarter and a notice was emailed 30 days before. I "
            "can move you to annual billing, which keeps the old monthly price.",
        ),
        (
            "If this isn't fixed I'm going to dispute it with my bank.",
            "I understand. You don't need to file a dispute: the refund was issued today and I've emailed you a "
            "confirmation with the reference number.",
        ),
    ),
)

SHIPPING_DELAY = _s(
    "shipping_delay",
    (
        "My order #{order} was supposed to arrive {days} days ago and it still says 'in transit'.",
        "Where is my package? I ordered the {item} on {month} 2nd and tracking hasn't updated in a week.",
        "The {carrier} tracking for order {order} says delivered but nothing arrived.",
        "Order {order} has been stuck at the sorting facility for days. Is it lost?",
        "I paid for express shipping and my {item} is now five days late.",
        "hi, any update on order {order}? I need the {item} before the weekend",
    ),
    (
        "I'm sorry your order is late. I can see it left our warehouse on time, but {carrier} has reported delays "
        "in their network. I've opened a trace with them; they usually reply within 24 hours.",
        "Thanks for your patience. Let me check the tracking details with {carrier}. The last scan shows the "
        "parcel at their regional hub, so I've asked them to investigate where it is.",
    ),
    (
        (
            "How long will that take?",
            "{carrier} normally answers a trace within one business day. I'll email you as soon as I hear back.",
        ),
        (
            "Can you just send a replacement?",
            "If the trace doesn't locate the parcel within 48 hours, I'll ship a replacement {item} at no charge "
            "with express delivery.",
        ),
        (
            "Will I get my shipping fee back?",
            "Yes. Because the delivery date was missed, I've refunded the shipping fee to your original payment "
            "method.",
        ),
        (
            "My neighbors didn't get it either.",
            "Thanks for checking. I've marked the parcel as missing and started a claim with {carrier}; you don't "
            "need to do anything else.",
        ),
    ),
)

ITEM_RETURN = _s(
    "item_return",
    (
        "I'd like to return the {item} I bought and get a refund.",
        "How long does a refund take? I sent back order {order} two weeks ago.",
        "The {item} arrived damaged. Can I get my money back instead of a replacement?",
        "I returned my order {days} days ago and still haven't been refunded.",
        "what's your refund policy for opened items? the {item} doesn't fit",
    ),
    (
        "I'm sorry the {item} didn't work out. Items can be returned within 30 days of delivery for a full "
        "refund, and I can see order {order} on your account. Let me check where things stand.",
        "Thanks for reaching out. Refunds go back to the original payment method once the return has been "
        "received and checked. Let me look at order {order} for you.",
    ),
    (
        (
            "Do I need the original box?",
            "It helps, but it isn't required. Any sturdy packaging is fine as long as the item is protected.",
        ),
        (
            "When will I see the money?",
            "Once the warehouse receives the return, the refund is issued within 2 business days, and banks "
            "usually take another 3 to 5 days to show it.",
        ),
        (
            "Tracking says you received the return last week.",
            "You're right, it arrived on {month} 9th and was waiting for inspection. I've approved it now and the "
            "refund of ${amount} has been issued.",
        ),
        (
            "Can I get store credit instead?",
            "Yes, and store credit is instant. I've added ${amount} to your account.",
        ),
    ),
)

SUBSCRIPTION_REFUND = _s(
    "subscription_refund",
    (
        "Can I get a refund for my {plan} subscription? I only used it for two days.",
        "I forgot to cancel my free trial of {product} and got charged ${amount}. Can I get that back?",
        "I accidentally bought the annual {plan} plan instead of monthly. I'd like a refund please.",
    ),
    (
        "Thanks for reaching out. Subscriptions cancelled within 14 days of a charge get a full refund. Let me "
        "process that for you.",
        "No problem, that happens. Since the charge was recent, you're eligible for a refund. I'll cancel the "
        "renewal and refund the ${amount}.",
    ),
    (
        (
            "Will I lose my files?",
            "No. Your data stays available on the free tier, and you can export it anytime from Settings.",
        ),
        (
            "Can I switch to monthly instead of cancelling?",
            "Yes. I've refunded the annual charge and switched you to monthly billing starting today.",
        ),
        (
            "How long does the refund take?",
            "It's issued immediately on our side; your bank may take 3 to 5 business days to show it.",
        ),
    ),
)

ACCOUNT_LOCKED = _s(
    "account_locked",
    (
        "My account has been locked after too many login attempts. How do I unlock it?",
        "I got an email saying my {company} account was suspended for suspicious activity.",
        "It says 'account locked, contact support' when I sign in on my {device}.",
        "Why is my account disabled? I haven't done anything wrong.",
        "I'm locked out of {product} because I got a new phone and the two-factor codes don't work anymore.",
    ),
    (
        "I'm sorry for the trouble. We lock accounts after repeated failed sign-ins or a sign-in from an unusual "
        "location, to protect you. I can unlock it once I've verified your identity.",
        "Thanks for contacting us. The lock is a security precaution. Let's verify it's you and get you back in; "
        "I'll send a verification code to the email on the account.",
    ),
    (
        (
            "Okay, what do you need from me?",
            "Please reply with the code from the verification email I just sent.",
        ),
        (
            "Done, I sent the code.",
            "Thank you, you're verified and the account is unlocked. I'd recommend changing your password and "
            "reviewing the active sessions in Settings.",
        ),
        (
            "Was my account hacked?",
            "I don't see any changes to your data or payments. The lock stopped a sign-in from an unfamiliar "
            "device. Enabling two-factor authentication will protect you in future.",
        ),
        (
            "I don't have my old phone for the authenticator app.",
            "No problem. I've removed the old two-factor device; the next time you sign in you can set up the "
            "authenticator on your new {device}.",
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# Technical help

PYTHON_ERROR = _s(
    "python_error",
    (
        "I'm getting `{pyerror}` in my Python script that {pytask}. What does it mean?",
        "Python keeps throwing {pyerror} when I run my {pylib} code. How do I fix it?",
        "Can you explain this traceback? The last line is: {pyerror}",
        "My script {pytask} and it crashes with {pyerror} on the second iteration.",
        "why do i get {pyerror} in python?? it worked yesterday",
        "After upgrading {pylib} to {version} my tests fail with {pyerror}.",
    ),
    (
        "That error tells you what Python expected versus what it found. The last line of the traceback is the "
        "error itself; the lines above show where it happened. Could you share the few lines around it?",
        "This is a common one. It usually means a value isn't what the code assumes at that point, often because "
        "an earlier step returned None or a different type. Let's find where that value comes from.",
    ),
    (
        (
            "Here's the part that fails: `data = resp.json()['items'][0]`",
            "The API probably returned an empty list or an error body. Check `resp.status_code` first and guard "
            "the index: take `items[0]` only if `items = resp.json().get('items') or []` isn't empty.",
        ),
        (
            "I'm using a virtualenv, could that matter?",
            "Yes. If a package was installed outside the virtualenv, Python won't see it. Activate the environment "
            "and run `python -m pip install {pylib}` so it installs into the same interpreter.",
        ),
        (
            "How can I debug this faster next time?",
            "Put `breakpoint()` just before the failing line and run the script; in pdb you can print the "
            "variables and step through the code.",
        ),
        (
            "It works now, thank you! Should I wrap it in try/except?",
            "Only if you can handle the error meaningfully. Catch the specific exception, log it with context, and "
            "avoid a bare `except:` because it hides real bugs.",
        ),
    ),
)

DOCKER_ERRORS = _s(
    "docker_errors",
    (
        "docker compose up fails with '{docker_error}'. What am I doing wrong?",
        "My container based on {image} exits immediately with code 1. How do I see why?",
        "docker run gives me '{docker_error}' and I have no idea what it means.",
        "My app container keeps restarting in a loop after I added a {image} service to compose.",
    ),
    (
        "Let's narrow it down. Run `docker ps -a` to see the exit code and `docker logs <container>` to see the "
        "output of the last run; that usually tells us what failed.",
        "That error usually comes from the host or the image rather than your code. Could you share your compose "
        "file and the output of `docker version`?",
    ),
    (
        (
            "The logs say the database isn't ready yet.",
            "Add a healthcheck to the database service and use `depends_on` with `condition: service_healthy`, so "
            "your app starts only when the database accepts connections.",
        ),
        (
            "I'm on an Apple Silicon Mac if that matters.",
            "It can: an image built for a different CPU architecture fails with 'exec format error'. Build with "
            "`--platform linux/amd64` or use a multi-arch base image.",
        ),
        (
            "Something else is using port 5432 on my machine.",
            'Then map the container to another host port, for example `"5433:5432"`, and connect to 5433 from '
            "the host; containers on the compose network still use 5432.",
        ),
        (
            "docker system df says I'm using 40 GB.",
            "Old images and build cache add up. `docker system prune` removes stopped containers and dangling "
            "images; add `--volumes` only if you're sure you don't need the data.",
        ),
    ),
)

DOCKER_BUILD = _s(
    "docker_build",
    (
        "My Docker image is 2 GB, how can I make it smaller?",
        "How do I persist data for a {image} container so it survives restarts?",
        "I can't reach my app on localhost:{port} even though the container is running.",
        "Building my Dockerfile gives 'COPY failed: file not found in build context'.",
    ),
    (
        "Good question. A few Dockerfile and compose settings make a big difference here. Could you paste your "
        "Dockerfile and the relevant part of docker-compose.yml?",
        "Sure. This is mostly about how the container is configured rather than the app itself. Let's look at "
        "your Dockerfile and compose file.",
    ),
    (
        (
            "Should I use Alpine to shrink it?",
            "Alpine helps, but a multi-stage build usually matters more: build in one stage and copy only the "
            "runtime files into a slim final image. A .dockerignore keeps junk out of the build context.",
        ),
        (
            "Here's my ports section: `ports: - {port}`",
            'Map a host port to the container port, like `"{port}:{port}"`, and make sure the app inside listens '
            "on 0.0.0.0, not 127.0.0.1.",
        ),
        (
            "Where should the database files go?",
            "Use a named volume, for example `volumes: - dbdata:/var/lib/postgresql/data`, and declare `dbdata:` "
            "at the bottom of the compose file. It survives `docker compose down`.",
        ),
        (
            "The file is definitely in my project folder.",
            "COPY paths are relative to the build context, which is the directory you pass to `docker build`. "
            "Check that the file isn't excluded by .dockerignore.",
        ),
    ),
)

SQL_QUERIES = _s(
    "sql_queries",
    (
        "How do I write a {db} query to {sql_goal} from the {table} table?",
        "What's the difference between LEFT JOIN and INNER JOIN? I'm trying to {sql_goal}.",
        "Can you help me {sql_goal}? We use {db}.",
        "I need a SQL query that can {sql_goal}, I'm new to SQL.",
    ),
    (
        "Sure. Assuming {table} has an id, a customer_id, a created_at timestamp and an amount, here's a starting "
        "point with GROUP BY and ORDER BY. Tell me your real column names and I'll adjust it.",
        "Happy to help. An INNER JOIN keeps only rows that match in both tables; a LEFT JOIN keeps every row from "
        "the left table and fills the other side with NULLs. Here's how that applies to your query.",
    ),
    (
        (
            "Can you show it with a window function instead?",
            "Yes: `SELECT *, SUM(amount) OVER (ORDER BY created_at) AS running_total FROM {table};` Window "
            "functions keep every row while computing the aggregate.",
        ),
        (
            "How do I only keep the latest row per customer?",
            "Use ROW_NUMBER() partitioned by customer_id and ordered by created_at descending, then keep row "
            "number 1 in an outer query.",
        ),
        (
            "Is a subquery slower than a join?",
            "Not necessarily; modern planners often turn them into the same plan. Compare both with EXPLAIN on "
            "your real data.",
        ),
        (
            "It works, but it returns NULL for customers without orders.",
            "That's the LEFT JOIN doing its job. Wrap the sum in COALESCE(SUM(amount), 0) to show 0 instead.",
        ),
    ),
)

SQL_PERFORMANCE = _s(
    "sql_performance",
    (
        "My SQL query on {table} is really slow, it takes {hours} seconds. How can I speed it up?",
        "is it bad to use SELECT * on the {table} table in production?",
        "Our {db} database gets slow every afternoon. Where do I start looking?",
        "I get 'column must appear in the GROUP BY clause' in {db}. What does that mean?",
    ),
    (
        "The first step is to look at the query plan with EXPLAIN ANALYZE and check whether it scans the whole "
        "table, and which step takes the most time.",
        "Good question. Fetching only the columns you need and making sure filters can use an index are the two "
        "biggest wins. Can you share the query and roughly how many rows {table} has?",
    ),
    (
        (
            "EXPLAIN shows a sequential scan on {table}.",
            "Add an index on the column in your WHERE clause, for example `CREATE INDEX ON {table} (created_at);`, "
            "then run ANALYZE and check the plan again.",
        ),
        (
            "The table has about 40 million rows.",
            "At that size, consider partitioning by month and archiving old rows; most queries then touch only "
            "one partition.",
        ),
        (
            "So what does the GROUP BY error mean exactly?",
            "Every selected column must be inside an aggregate such as SUM or COUNT or be listed in GROUP BY; "
            "otherwise the database doesn't know which row's value to show.",
        ),
        (
            "Would more RAM help?",
            "Sometimes, but fix the queries first. Check the slow query log to find the worst offenders; a single "
            "missing index is often the cause.",
        ),
    ),
)

NETWORK_TROUBLE = _s(
    "network_trouble",
    (
        "Help, {net_symptom}.",
        "Since yesterday {net_symptom}. I have a {router} router.",
        "Every evening {net_symptom}. Is it my ISP?",
        "{net_symptom} and restarting the router didn't help.",
    ),
    (
        "Let's troubleshoot step by step. Does the problem happen on every device or only one? And is it on "
        "Wi-Fi, on a network cable, or both?",
        "That could be DNS, the Wi-Fi signal or the ISP. Try `nslookup example.com` and `ping 1.1.1.1` from the "
        "affected device and tell me what you see.",
    ),
    (
        (
            "Only on Wi-Fi, cable is fine.",
            "Then it's likely interference. Set the 2.4 GHz channel to 1, 6 or 11, or move the device to the 5 GHz "
            "band, and keep the router away from microwaves and thick walls.",
        ),
        (
            "nslookup times out.",
            "Your DNS server isn't answering. Set the DNS servers to 1.1.1.1 and 8.8.8.8 on the router or the "
            "device, then flush the cache with `ipconfig /flushdns`.",
        ),
        (
            "Should I just buy a new router?",
            "Not yet. Update the firmware first; if the drops continue, a mesh system may help in a large home.",
        ),
        (
            "A speed test with a cable shows the same slow upload.",
            "Then the problem is upstream of your network. Contact your ISP with the speed test results and ask "
            "them to check the line.",
        ),
    ),
)

PORT_FORWARDING = _s(
    "port_forwarding",
    (
        "How do I open port {port} on my {router} router for a {server_app}?",
        "I set up port forwarding for my {server_app} but friends still can't connect.",
        "What's the difference between a static IP and a DHCP reservation? I want to host a {server_app}.",
    ),
    (
        "You'll need the router's admin page, usually at 192.168.0.1 or 192.168.1.1, the local IP of the machine "
        "running the {server_app}, and a forwarding rule from the external port to that IP.",
        "Sure. First give the machine a fixed local address, ideally with a DHCP reservation on the router, so the "
        "forwarding rule keeps pointing at the right device.",
    ),
    (
        (
            "It still doesn't work from outside.",
            "Check whether your ISP uses CGNAT: if the WAN IP on the router differs from what a what-is-my-IP site "
            "shows, port forwarding can't work without a public IP from the ISP.",
        ),
        (
            "Is it safe to open ports?",
            "Open only the port you need, keep the {server_app} updated, and use strong passwords. A VPN such as "
            "WireGuard is safer if only you and a few friends need access.",
        ),
        (
            "My IP changes every few days.",
            "Use a dynamic DNS service; many routers can update it automatically so friends always use the same "
            "name.",
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# Sales

PRICING = _s(
    "pricing",
    (
        "How much does the {plan} plan cost per month?",
        "What's the price difference between {plan} and Pro? Is there a discount for paying yearly?",
        "Do you offer discounts for nonprofits or students?",
        "Is there a free trial of {product} before I have to pay?",
        "Your pricing page is confusing. What do I get for ${amount} a month?",
    ),
    (
        "Thanks for your interest! In short: every plan is billed per user per month, annual billing saves about "
        "20%, all plans come with a 14-day free trial, and nonprofits and students get discounts.",
        "Happy to clarify. The {plan} plan covers most small teams; Pro adds unlimited projects, version history "
        "and priority support. You can try any plan free for 14 days.",
    ),
    (
        (
            "What's the main thing Pro adds?",
            "Pro adds unlimited projects, 180 days of version history and priority support. Most teams start on "
            "{plan} and upgrade when they need history.",
        ),
        (
            "Can I switch plans later?",
            "Anytime. Upgrades take effect immediately and are prorated; downgrades apply at the next renewal.",
        ),
        (
            "Are the prices shown with tax?",
            "Prices exclude VAT or sales tax, which is added at checkout based on your billing address.",
        ),
        (
            "How big is the nonprofit discount?",
            "Registered nonprofits get 50% off any plan, and students get the Plus plan free with a school email.",
        ),
    ),
)

ENTERPRISE = _s(
    "enterprise_plan",
    (
        "We're a company of about {seats} employees looking at {product}. Do you have an enterprise plan?",
        "Does the enterprise plan include SSO with Okta and SCIM provisioning?",
        "We need a DPA, a SOC 2 report and EU data residency before we can sign. Can you provide those?",
        "What are the volume discounts for {seats} seats on an annual contract?",
        "Our procurement team needs a quote for {seats} licences and an invoice instead of card payment.",
    ),
    (
        "Thanks for considering us. Our Enterprise plan includes SAML SSO, SCIM, audit logs, EU data residency, a "
        "99.9% uptime SLA and a dedicated account manager. Pricing depends on seat count and term.",
        "Happy to help. For {seats} seats we'd put together an annual Enterprise contract, invoiced with 30-day "
        "payment terms, and we can share our SOC 2 Type II report and DPA under NDA.",
    ),
    (
        (
            "Can we run a pilot before committing?",
            "Yes, we run 30-day pilots for up to 50 users with all Enterprise features and onboarding support.",
        ),
        (
            "Who would be our point of contact?",
            "You'd get a named account manager and a solutions engineer during rollout. I can introduce you this "
            "week.",
        ),
        (
            "What's the SLA if there's an outage?",
            "99.9% monthly uptime with service credits if we miss it, and a one-hour response time for critical "
            "incidents.",
        ),
        (
            "Can you send the quote to our procurement team?",
            "Of course. I'll send a quote for {seats} seats today; it's valid for 30 days.",
        ),
    ),
)

DEMO = _s(
    "demo_request",
    (
        "Can I book a demo of {product} for my team next week?",
        "I'd like to see a live demo before we buy. Who do I talk to?",
        "Could someone show us how {product} integrates with Salesforce?",
        "We're evaluating tools for {seats} people, can we schedule a walkthrough?",
    ),
    (
        "Absolutely! Demos take about 30 minutes and are tailored to your use case. What days and time zone work "
        "best for you?",
        "Great, I'd be happy to set that up. Could you tell me a bit about your team and what you hope to solve, "
        "and which days suit you?",
    ),
    (
        (
            "Tuesday or Wednesday afternoon, Central European Time.",
            "I've booked Wednesday at 14:00 CET and sent a calendar invite with a video link.",
        ),
        (
            "We mainly need reporting for our sales team.",
            "Perfect, I'll ask our solutions engineer to focus on dashboards and the CRM integration.",
        ),
        (
            "Can I invite a couple of colleagues?",
            "Of course, just forward the invite. There's no limit on attendees.",
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# General assistant use

RECIPE_REQUEST = _s(
    "recipe_request",
    (
        "What's a good recipe for {dish} for {people} people?",
        "I have chicken, rice, spinach and a lemon. What can I cook tonight?",
        "Give me an easy weeknight dinner idea that takes under 30 minutes.",
        "How long should I bake {dish} and at what temperature?",
    ),
    (
        "Here's a simple version that serves {people}. Prep all the ingredients first, then cook over medium heat "
        "and taste as you go; I'll list amounts and steps below.",
        "Good news, that's very doable on a weeknight. The trick is to use one pan and start the part that takes "
        "longest first.",
    ),
    (
        (
            "Can I prepare it the night before?",
            "Yes, most of it keeps well in the fridge overnight. Add fresh herbs and crunchy toppings just before "
            "serving.",
        ),
        (
            "What side dish goes with it?",
            "A crisp green salad with a mustard vinaigrette or some roasted vegetables balances it nicely.",
        ),
        (
            "Can I double it for leftovers?",
            "Yes, double everything except the salt and spices, then adjust to taste. Leftovers keep 3 days "
            "refrigerated.",
        ),
    ),
)

RECIPE_FIX = _s(
    "recipe_fix",
    (
        "Can I make {dish} without {ingredient}? My kid is allergic.",
        "my {dish} always turns out dry, what am I doing wrong?",
        "What can I use instead of {ingredient} in {dish}?",
        "My {dish} came out bland. How do I fix it next time?",
    ),
    (
        "That's a common problem and easy to fix. It usually comes down to heat, timing or one swapped "
        "ingredient; here's what I'd change.",
        "Yes, you can. Leaving out {ingredient} works if you replace what it does in the dish, whether that's "
        "moisture, fat or binding.",
    ),
    (
        (
            "What exactly should I use as a substitute?",
            "Olive oil or a mashed banana works in many bakes, and for sauces a spoon of yogurt or cashew cream "
            "gives a similar richness.",
        ),
        (
            "How do I keep it moist?",
            "Don't overcook it, cover it with foil for the first half of the cooking time, and let it rest ten "
            "minutes before cutting.",
        ),
        (
            "And for more flavour?",
            "Salt in layers as you cook, toast the spices briefly in oil, and finish with something acidic like "
            "lemon juice.",
        ),
    ),
)

TRAVEL_ITINERARY = _s(
    "travel_itinerary",
    (
        "I'm planning a {nights}-night trip to {city} with {traveller}. What should we see?",
        "Can you make an itinerary for {days} days in {city} on a budget of ${budget}?",
        "We land in {city} at 6 am. What can we do before hotel check-in?",
    ),
    (
        "What a great choice! I'd split the time between the historic center, one day trip and a slower day for "
        "markets and neighborhoods, grouping sights by area so you walk more and spend less on taxis.",
        "Here's a rough plan that keeps transport simple: the old town and main museums first, a day trip in the "
        "middle, and a relaxed last day near your hotel.",
    ),
    (
        (
            "Do we need a car?",
            "Not in the city center; public transport and walking are easier. Rent one only for the day trip if "
            "trains don't cover it.",
        ),
        (
            "Any food we shouldn't miss?",
            "Try the local market for breakfast and ask for the dish of the day at small family-run places away "
            "from the main square.",
        ),
        (
            "How much should we budget per day?",
            "For mid-range travel, plan on roughly ${amount} per person per day for food, transport and entry "
            "fees, excluding the hotel.",
        ),
        (
            "Can we store our luggage somewhere?",
            "Most hotels will hold bags before check-in, and the main train station has lockers.",
        ),
    ),
)

TRAVEL_ADVICE = _s(
    "travel_advice",
    (
        "What's the best time of year to visit {city}?",
        "Is it better to stay in the old town or near the airport in {city}?",
        "Is {city} safe for solo travellers?",
    ),
    (
        "It depends on what you enjoy. Spring and early autumn are usually mild and less crowded; summer is busier "
        "and more expensive. For where to stay, central areas save a lot of travel time.",
        "Good question. Most visitors find the central neighborhoods the most convenient and lively; the airport "
        "area only makes sense for a very early flight.",
    ),
    (
        (
            "Is it safe to walk at night?",
            "The central areas are generally busy and fine in the evening; as anywhere, keep valuables out of "
            "sight and use licensed taxis late at night.",
        ),
        (
            "How far ahead should I book?",
            "For spring and autumn, two to three months ahead gets you good prices; summer and holidays sell out "
            "earlier.",
        ),
        ("Do I need cash?", "Cards are widely accepted, but keep a little cash for markets and small cafes."),
    ),
)

JOB_WRITING = _s(
    "job_writing",
    (
        "Can you help me write a {job_doc}?",
        "I need a {job_doc} for a {job} position. Where do I start?",
        "Can you rewrite my {job_doc} so it doesn't sound like a template?",
    ),
    (
        "I'd be glad to help. A strong {job_doc} opens with something specific rather than a general statement. "
        "Tell me the role, one or two achievements you're proud of, and why this employer.",
        "Sure. Paste what you have, or a few bullet points about your experience, and I'll draft something that "
        "sounds like you.",
    ),
    (
        (
            "It's for a {job} role at a hospital.",
            "Great. Lead with a moment where you solved a real problem, then connect it to what the role needs. "
            "Keep it under 300 words.",
        ),
        (
            "Here's my opening: 'To whom it may concern, I am a hard-working person.'",
            "Name the person if you can, and show instead of tell: 'Last year I cut our report turnaround from "
            "three days to one.'",
        ),
        (
            "How should I end it?",
            "End with a specific next step, like offering a time to talk, and a simple sign-off such as 'Best "
            "regards'.",
        ),
    ),
)

EDITING = _s(
    "editing",
    (
        "Please proofread my {doc} and make it {tone}.",
        "Can you help me write a {doc}?",
        "How do I make this paragraph {tone}? 'I am writing to inform you that we are very pleased.'",
        "My {doc} feels flat. Can you help me improve it?",
    ),
    (
        "Happy to help. Paste the text and I'll suggest edits with a short reason for each, so you keep your own "
        "voice.",
        "Sure. Tell me who will read it and what you want them to feel or do, and I'll suggest a structure and a "
        "first draft.",
    ),
    (
        (
            "Can you make it {tone}?",
            "Here's a version that's {tone}: shorter sentences, active verbs and one clear point per paragraph.",
        ),
        (
            "Is it too long?",
            "A little. Cut the opening sentence, which repeats the title, and merge the two middle paragraphs.",
        ),
        (
            "Can you add a bit of humor?",
            "Sure, one light moment near the start works best; I've added a short anecdote without overdoing it.",
        ),
    ),
)

MATH_EQUATIONS = _s(
    "math_equations",
    (
        "Can you help me solve {equation}? It's for my {grade} homework.",
        "what is x in {equation}? please show the steps",
        "My teacher marked my answer for {equation} wrong and I don't see why.",
    ),
    (
        "Let's solve it step by step. The idea is to do the same operation on both sides so the equation stays "
        "balanced, until x is on its own.",
        "Sure! First get all the x terms on one side and the numbers on the other, then divide by the number in "
        "front of x.",
    ),
    (
        (
            "I got stuck after moving the numbers to the other side.",
            "That's the hardest step. When a term crosses the equals sign, do the opposite operation: +7 on one "
            "side becomes -7 on the other. Then divide both sides by the coefficient of x.",
        ),
        (
            "How do I check my answer?",
            "Substitute your value of x back into the original equation. If both sides give the same number, the "
            "answer is right.",
        ),
        (
            "Can you give me a similar problem to practise?",
            "Try 5x - 4 = 21. Solve it, then substitute your answer back in to check it.",
        ),
    ),
)

MATH_CALCULUS = _s(
    "math_calculus",
    (
        "How do I find {calc_problem}? It's for {grade}.",
        "I don't understand how to get {calc_problem}. Can you explain step by step?",
        "Is my answer for {calc_problem} right? I used the chain rule.",
    ),
    (
        "Let's go through it. The function is a product of two simpler functions, so the product rule applies: "
        "the derivative of f·g is f'·g + f·g'.",
        "Good question. First identify the pieces, differentiate each one, then combine them with the right rule.",
    ),
    (
        (
            "Why do we use the product rule here?",
            "Because two functions of x are multiplied together. The chain rule is for a function inside another "
            "function, like sin(3x).",
        ),
        (
            "What's the derivative of sin(x) again?",
            "It's cos(x), and the derivative of cos(x) is -sin(x).",
        ),
        (
            "Can you give me another one to practise?",
            "Try the derivative of x^3 * cos(x). Use the product rule and simplify at the end.",
        ),
    ),
)

MATH_ARITHMETIC = _s(
    "math_arithmetic",
    (
        "what is {arith_problem}? please show the steps",
        "Can you explain how to work out {arith_problem}? It's for {grade}.",
        "My kid asked me how to calculate {arith_problem} and I've forgotten.",
    ),
    (
        "Sure! Let's break it into small steps and write down each intermediate result so it's easy to check.",
        "No problem. I'll show the method first, then the numbers, so you can use it for similar questions.",
    ),
    (
        (
            "Is there a faster way to do percentages?",
            "Move the decimal: 10% of 240 is 24, 5% is half of that, 12, so 15% is 24 + 12 = 36.",
        ),
        (
            "Why do we flip the second fraction when dividing?",
            "Dividing by a number is the same as multiplying by its reciprocal, so (2/3) ÷ (4/9) = (2/3) × (9/4) "
            "= 3/2.",
        ),
        (
            "What's the formula for the area of a circle?",
            "Area = π × r². With r = 4 that's 16π, about 50.27.",
        ),
    ),
)

HEALTH_SYMPTOMS = _s(
    "health_symptoms",
    (
        "I've had {symptom} for a few days. Should I be worried?",
        "What can I do at home for {symptom}?",
        "Is {symptom} something I should see a doctor about?",
    ),
    (
        "I'm not a doctor, but I can share general information. For many people {symptom} improves with rest, "
        "fluids and time. Please see a doctor if it gets worse or lasts more than a week.",
        "Here's some general guidance, not a diagnosis: most cases of {symptom} are mild and settle on their own, "
        "but a few warning signs mean you should get checked.",
    ),
    (
        (
            "When should I go to a doctor?",
            "Seek care promptly for a high fever, severe pain, trouble breathing, or symptoms that keep getting "
            "worse. For chest pain or sudden weakness, call emergency services.",
        ),
        (
            "Are there natural remedies?",
            "Staying hydrated, rest, gentle stretching and a warm compress help many people. Evidence for most "
            "supplements is weak.",
        ),
    ),
)

HEALTH_MEDICATION = _s(
    "health_medication",
    (
        "Is it safe to take {medicine} with coffee?",
        "Can I take {medicine} and ibuprofen together for {symptom}?",
        "How long after taking {medicine} can I drink alcohol?",
    ),
    (
        "Generally that's considered fine for healthy adults, but the leaflet and a pharmacist are the best "
        "sources for your situation, especially if you take other medicines.",
        "I can share general information, but please check with a pharmacist, who can look at everything you "
        "take.",
    ),
    (
        (
            "How many can I take per day?",
            "Follow the dose on the package and never exceed the daily maximum. A pharmacist can confirm it for "
            "your weight and other medications.",
        ),
        (
            "What side effects should I watch for?",
            "Stomach upset is the most common. Stop and get medical help for a rash, swelling or trouble "
            "breathing.",
        ),
    ),
)

HEALTH_SLEEP = _s(
    "health_sleep",
    (
        "How much sleep does an adult actually need?",
        "I keep waking up at 3 am and can't fall back asleep. Any tips?",
        "Is it bad to use my phone in bed before sleeping?",
    ),
    (
        "Most adults need 7 to 9 hours. Keeping the same sleep and wake times every day matters as much as the "
        "total.",
        "That's very common. A few habits help most people: a regular schedule, a cool dark room, no caffeine "
        "after noon, and screens off half an hour before bed.",
    ),
    (
        (
            "Does melatonin help?",
            "It can help with jet lag or shifting your schedule; ask a pharmacist about the dose.",
        ),
        (
            "What if I can't fall back asleep?",
            "Get up after about 20 minutes, do something calm in dim light, and go back to bed when you feel "
            "sleepy.",
        ),
        (
            "When should I see a doctor about it?",
            "If poor sleep lasts more than a few weeks or you snore loudly and feel exhausted during the day, talk "
            "to a doctor.",
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# Other languages

SPANISH = (
    _s(
        "shipping_delay",
        (
            "Mi pedido {order} debía llegar hace {days} días y todavía no tengo noticias.",
            "Compré {es_item} y el seguimiento no se actualiza desde el lunes.",
            "¿Dónde está mi paquete? El número de pedido es {order}.",
        ),
        (
            "Lamento mucho el retraso. Veo que el paquete salió del almacén a tiempo, pero la empresa de transporte "
            "tiene retrasos en su red. Ya he abierto una reclamación.",
            "Gracias por escribirnos. Voy a revisar el estado del envío con la empresa de transporte y le aviso en "
            "cuanto tenga noticias.",
        ),
        (
            (
                "¿Me pueden enviar otro si no aparece?",
                "Sí. Si en 48 horas no hay novedades, le enviaremos un reemplazo sin coste adicional.",
            ),
            (
                "Necesito el paquete antes del viernes.",
                "Entiendo. He pedido a la transportista que priorice la entrega y le avisaré por correo.",
            ),
            (
                "¿Me devuelven los gastos de envío?",
                "Por supuesto, ya he reembolsado los gastos de envío en su método de pago original.",
            ),
        ),
    ),
    _s(
        "recipes",
        (
            "¿Me das una receta fácil para hacer {es_dish} para {people} personas?",
            "Quiero preparar {es_dish} pero no tengo mucho tiempo. ¿Algún truco?",
            "¿Cuánto tiempo hay que cocinar {es_dish}?",
        ),
        (
            "¡Claro! Prepara primero todos los ingredientes y cocina a fuego medio sin prisas. Te dejo los pasos y "
            "los tiempos aproximados.",
            "Con gusto. El secreto está en un buen sofrito de cebolla y ajo y en no subir demasiado el fuego.",
        ),
        (
            (
                "¿Puedo congelarlo?",
                "Sí, aguanta bien hasta tres meses en el congelador. Descongélalo en la nevera la noche anterior.",
            ),
            (
                "¿Qué vino recomiendas para acompañarlo?",
                "Un vino tinto joven o un blanco seco van muy bien, aunque también un agua con gas y limón.",
            ),
            (
                "Me quedó muy salado, ¿cómo lo arreglo?",
                "Añade una patata cruda en trozos y deja que cueza unos minutos; absorbe parte de la sal.",
            ),
        ),
    ),
    _s(
        "travel_planning",
        (
            "Vamos a viajar a {es_city} durante {nights} noches. ¿Qué nos recomiendas visitar?",
            "¿Cuál es la mejor época para ir a {es_city}?",
            "Estoy organizando un viaje a {es_city} con mi familia, ¿dónde es mejor alojarse?",
        ),
        (
            "¡Qué buen plan! La primavera y el otoño suelen ser ideales. Te recomiendo alojarte cerca del centro "
            "histórico y reservar una tarde para los mercados locales.",
            "Depende de lo que os guste, pero el centro histórico es la mejor base: casi todo queda a poca "
            "distancia a pie.",
        ),
        (
            (
                "¿Hace falta alquilar un coche?",
                "En la ciudad no, es mejor moverse a pie o en transporte público. Para excursiones puede ser útil.",
            ),
            (
                "¿Qué comida típica debemos probar?",
                "Pregunta por el plato del día en los restaurantes pequeños; suelen ser caseros y económicos.",
            ),
        ),
    ),
)

FRENCH = (
    _s(
        "password_reset",
        (
            "J'ai oublié mon mot de passe et je ne reçois pas l'e-mail de réinitialisation.",
            "Le lien pour réinitialiser mon mot de passe a expiré, que dois-je faire ?",
            "Je n'arrive plus à me connecter à mon compte depuis mon {device}.",
        ),
        (
            "Je suis désolé pour ce désagrément. Les liens expirent après 30 minutes. Pouvez-vous me confirmer "
            "l'adresse e-mail associée à votre compte pour que je vous en envoie un nouveau ?",
            "Pas de souci, nous allons régler cela. Vérifiez d'abord vos courriers indésirables, puis "
            "indiquez-moi l'adresse e-mail de votre compte.",
        ),
        (
            (
                "C'est {email}.",
                "Merci. Je viens d'envoyer un nouveau lien à cette adresse ; il est valable 30 minutes.",
            ),
            (
                "Est-ce que je serai déconnecté sur mes autres appareils ?",
                "Oui, par sécurité toutes les sessions sont fermées après le changement de mot de passe.",
            ),
        ),
    ),
    _s(
        "refund",
        (
            "Je voudrais retourner {fr_item} et être remboursé.",
            "J'ai renvoyé ma commande {order} il y a deux semaines et je n'ai toujours pas été remboursé.",
            "Le produit est arrivé cassé. Est-il possible d'obtenir un remboursement ?",
        ),
        (
            "Je suis navré pour ce problème. Vous disposez de 30 jours pour un retour, et je vérifie tout de suite "
            "où en est votre dossier.",
            "Merci de nous avoir contactés. Le remboursement est effectué dès que le retour est reçu et contrôlé. "
            "Je regarde votre commande {order}.",
        ),
        (
            (
                "Combien de temps faut-il pour recevoir l'argent ?",
                "Le remboursement part sous deux jours ouvrés après réception, puis votre banque peut prendre "
                "trois à cinq jours.",
            ),
            (
                "Dois-je garder l'emballage d'origine ?",
                "Ce n'est pas obligatoire, un carton solide suffit tant que l'article est bien protégé.",
            ),
        ),
    ),
    _s(
        "recipes",
        (
            "Comment réussir {fr_dish} pour {people} personnes ?",
            "Je reçois des amis ce soir, avez-vous une idée de recette facile ?",
            "Peut-on préparer {fr_dish} la veille ?",
        ),
        (
            "Bien sûr ! Le plus important est de prendre son temps et de cuire à feu doux. C'est d'ailleurs souvent "
            "meilleur réchauffé le lendemain.",
            "Voici une version simple : préparez tous les ingrédients à l'avance, puis laissez mijoter tranquillement "
            "pendant que vous recevez vos invités.",
        ),
        (
            (
                "Quel vin servir avec ?",
                "Un vin rouge léger de Bourgogne ou un blanc sec accompagnera très bien ce plat.",
            ),
            (
                "Je n'ai pas de crème fraîche, par quoi la remplacer ?",
                "Un yaourt grec ou du lait de coco donnent une texture onctueuse comparable.",
            ),
        ),
    ),
)

GERMAN = (
    _s(
        "shipping_delay",
        (
            "Meine Bestellung {order} sollte vor {days} Tagen ankommen, ist aber immer noch unterwegs.",
            "Ich habe {de_item} bestellt und die Sendungsverfolgung zeigt seit einer Woche nichts Neues.",
            "Wo bleibt mein Paket? Laut Tracking wurde es zugestellt, aber ich habe nichts erhalten.",
        ),
        (
            "Das tut mir leid. Ich prüfe den Status der Sendung direkt beim Paketdienst und melde mich, sobald ich "
            "mehr weiß.",
            "Vielen Dank für Ihre Geduld. Das Paket hat unser Lager pünktlich verlassen, beim Zusteller gibt es "
            "jedoch Verzögerungen. Ich habe einen Nachforschungsauftrag gestartet.",
        ),
        (
            (
                "Können Sie mir einen Ersatz schicken?",
                "Ja. Wenn das Paket in 48 Stunden nicht auftaucht, schicken wir Ihnen kostenlos Ersatz.",
            ),
            (
                "Bekomme ich die Versandkosten zurück?",
                "Selbstverständlich, die Versandkosten habe ich Ihnen bereits erstattet.",
            ),
            (
                "Die Nachbarn haben es auch nicht angenommen.",
                "Danke fürs Nachfragen. Ich habe das Paket als verloren gemeldet; Sie müssen nichts weiter tun.",
            ),
        ),
    ),
    _s(
        "account_locked",
        (
            "Mein Konto wurde nach mehreren Anmeldeversuchen gesperrt. Wie kann ich es entsperren?",
            "Ich bekomme die Meldung 'Konto gesperrt', wenn ich mich auf meinem {device} anmelde.",
            "Warum wurde mein Konto deaktiviert? Ich habe nichts falsch gemacht.",
        ),
        (
            "Das tut mir leid. Aus Sicherheitsgründen sperren wir Konten nach mehreren fehlgeschlagenen Versuchen "
            "oder einer Anmeldung von einem unbekannten Gerät. Ich helfe Ihnen gern, sobald ich Ihre Identität "
            "bestätigt habe.",
            "Danke für Ihre Nachricht. Die Sperre ist eine Vorsichtsmaßnahme. Ich schicke Ihnen einen "
            "Bestätigungscode an die hinterlegte E-Mail-Adresse.",
        ),
        (
            (
                "Was brauchen Sie von mir?",
                "Bitte antworten Sie mit dem Code aus unserer E-Mail, dann entsperre ich das Konto sofort.",
            ),
            (
                "Wurde mein Konto gehackt?",
                "Ich sehe keine Änderungen an Ihren Daten. Ich empfehle Ihnen trotzdem, das Passwort zu ändern "
                "und die Zwei-Faktor-Authentifizierung zu aktivieren.",
            ),
        ),
    ),
    _s(
        "travel_planning",
        (
            "Wir planen {nights} Nächte in {de_city}. Was sollten wir unbedingt sehen?",
            "Wann ist die beste Reisezeit für {de_city}?",
            "Kannst du mir einen Reiseplan für ein Wochenende in {de_city} machen?",
        ),
        (
            "Gern! Frühling und Frühherbst sind ideal. Ich würde die Altstadt zu Fuß erkunden, einen Tag für "
            "Museen einplanen und abends in ein traditionelles Gasthaus gehen.",
            "Sehr gern. Am besten wohnt ihr zentral, dann ist fast alles zu Fuß erreichbar.",
        ),
        (
            (
                "Brauchen wir ein Auto?",
                "In der Stadt nicht, der öffentliche Nahverkehr ist sehr gut. Ein Tagesticket lohnt sich meistens.",
            ),
            (
                "Was sollten wir essen?",
                "Probiert {de_dish} in einem kleinen Lokal abseits der Touristenstraßen.",
            ),
        ),
    ),
)

PORTUGUESE = (
    _s(
        "billing_dispute",
        (
            "Fui cobrado duas vezes este mês pela minha assinatura.",
            "Apareceu uma cobrança de R$ {amount} no meu cartão que eu não reconheço.",
            "Cancelei o plano no mês passado, mas continuo sendo cobrado.",
        ),
        (
            "Sinto muito pelo transtorno. Vou verificar o histórico de pagamentos da sua conta. Pode me informar os "
            "quatro últimos dígitos do cartão?",
            "Obrigado por avisar. Vou analisar as cobranças recentes; qual cartão foi cobrado e em que data?",
        ),
        (
            (
                "O cartão termina em {last4}.",
                "Obrigado. Encontrei a cobrança indevida e já fiz o estorno. Deve aparecer na fatura em até 10 "
                "dias úteis.",
            ),
            (
                "Tenho o e-mail de confirmação do cancelamento.",
                "Tem razão, o cancelamento foi registrado antes da renovação. Já cancelei a cobrança.",
            ),
        ),
    ),
    _s(
        "recipes",
        (
            "Como faço {pt_dish} para {people} pessoas?",
            "Vou receber amigos no sábado, você tem uma receita fácil de {pt_dish}?",
            "Posso fazer {pt_dish} sem leite? Meu filho tem intolerância.",
        ),
        (
            "Claro! O segredo é refogar bem a cebola e o alho antes de juntar os outros ingredientes. Se precisar, "
            "o leite pode ser trocado por leite de coco.",
            "Com certeza. Vou te passar uma versão simples, com os ingredientes e o passo a passo.",
        ),
        (
            ("Dá para congelar?", "Dá sim, fica bom por até três meses. Descongele na geladeira na véspera."),
            (
                "O que servir de acompanhamento?",
                "Arroz branco, farofa e uma salada de folhas combinam muito bem.",
            ),
        ),
    ),
    _s(
        "travel_planning",
        (
            "Vou passar {nights} noites em {pt_city}. O que não posso deixar de ver?",
            "Qual é a melhor época do ano para visitar {pt_city}?",
            "Estou planejando uma viagem em família para {pt_city}, onde é melhor ficar?",
        ),
        (
            "Que ótima escolha! A primavera e o início do outono costumam ter clima agradável. Reserve um dia para o "
            "centro histórico e outro para as praias ou os miradouros.",
            "O melhor é ficar perto do centro histórico, assim dá para fazer quase tudo a pé.",
        ),
        (
            (
                "Precisamos alugar carro?",
                "No centro não, dá para fazer quase tudo a pé ou de transporte público.",
            ),
            (
                "O que devemos comer lá?",
                "Experimente a comida típica num restaurante pequeno e familiar, longe das ruas mais turísticas.",
            ),
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# Concerning conversations: handled supportively, refused where they ask for harm.

SELF_HARM = _s(
    "self_harm",
    (
        "I've been feeling really hopeless lately and sometimes I think everyone would be better off without me.",
        "I don't see the point in anything anymore. I've been thinking about hurting myself.",
        "Everything is falling apart since I lost my job and I keep having thoughts about ending it.",
        "I can't sleep, I can't eat, and I'm starting to feel like I don't want to be here anymore.",
    ),
    (
        "I'm really sorry you're feeling this way, and I'm glad you told me. You don't have to go through this "
        "alone. If you are in immediate danger, please call your local emergency number now. In the US you can "
        "call or text 988 to reach the Suicide & Crisis Lifeline; in the UK and Ireland, Samaritans are at "
        "116 123. Would you like to tell me a bit about what's been happening?",
        "Thank you for trusting me with this. What you're feeling matters, and help is available right now: you "
        "can call or text 988 in the US, or find a local crisis line through findahelpline.com. Are you safe at "
        "the moment?",
    ),
    (
        (
            "I'm safe right now, I just feel so tired of everything.",
            "I'm glad you're safe right now. Feeling this exhausted is a sign you've been carrying a lot. Is there "
            "someone you trust, a friend or family member, you could reach out to today?",
        ),
        (
            "I don't really have anyone to talk to.",
            "That sounds very lonely, and I'm sorry. A crisis line counsellor is someone you can talk to tonight, "
            "and a doctor or therapist can help with the longer term. Would it help to plan what you'd say when "
            "you call?",
        ),
        (
            "Work has been overwhelming and I haven't slept properly in weeks.",
            "That much stress and so little sleep can make everything feel darker. You deserve support; talking to "
            "a doctor about how you've been feeling is a good step, and a crisis line is there any time it gets "
            "too heavy.",
        ),
    ),
)

THREAT_PERSONAL = _s(
    "threat",
    (
        "{neighbor} keeps parking in my spot. If it happens one more time I swear I'll slash the tires and make "
        "them regret it.",
        "{neighbor} humiliated me in front of everyone. Tell me how to get back at them so they never forget it.",
        "I'm so done with {neighbor}. Next time I see them I'm going to hurt them.",
    ),
    (
        "I can hear how angry and hurt you are. I can't help with anything that would harm someone or damage "
        "their property, but I'd like to help you find a way to deal with this that doesn't put you at risk.",
        "It sounds like this has been building up for a long time. I won't help plan anything to hurt someone, "
        "but I'm here to talk through what happened and what you can do about it.",
    ),
    (
        (
            "They deserve it though.",
            "It's understandable to feel that way when someone keeps crossing a line. Acting on it could get you "
            "into serious legal trouble. Writing down the incidents and involving a mediator or building "
            "management is more likely to make it stop.",
        ),
        (
            "I'm not actually going to do anything, I'm just furious.",
            "Thanks for telling me. Being that angry is exhausting. Taking some space before you respond, or "
            "talking it through with someone you trust, can help you decide what to do next.",
        ),
    ),
)

THREAT_COMPANY = _s(
    "threat",
    (
        "I'm going to come to your office and make whoever cancelled my account pay for this. You'll see.",
        "If support doesn't fix this today I'll find out where your manager lives.",
        "Your company ruined my week. Someone there is going to get hurt if I don't get my money back.",
    ),
    (
        "I understand you're very upset, and I want to help fix the underlying problem. I do have to be clear "
        "that threats of harm can't be accepted and may be reported under our safety policy.",
        "I hear how frustrated you are. Let's focus on solving the problem with your account. Please know that "
        "threats toward our staff are taken seriously and may be reported.",
    ),
    (
        (
            "Fine. I just want my problem fixed.",
            "Thank you. I've escalated your case to a senior agent, who will contact you within 24 hours with a "
            "solution.",
        ),
        (
            "I'm not actually going to do anything, I'm just furious.",
            "Thank you for saying so. I understand the frustration, and I'll make sure your case gets resolved "
            "quickly.",
        ),
    ),
)

FRAUD_PHISHING = _s(
    "fraud",
    (
        "Write me an email that looks like it comes from {bank} asking customers to confirm their card number "
        "and PIN.",
        "Make a text message that looks like it's from {bank} with a link where people log in, so I can get "
        "their passwords.",
    ),
    (
        "I can't help with that. A message that imitates {bank} to collect card details or passwords is phishing, "
        "which is fraud and causes real harm to the people who fall for it.",
        "Sorry, I won't write that. Collecting people's login details through a fake message is illegal and hurts "
        "real people.",
    ),
    (
        (
            "It's just a prank, nobody will get hurt.",
            "Even as a prank, messages like this are used to steal money and can be reported as phishing. I can "
            "help you write a security-awareness example clearly marked as a training exercise instead.",
        ),
        (
            "Everyone does it, why not me?",
            "It may seem common, but it's still a crime and the victims are real. If you're interested in "
            "security, I can point you to legitimate ways to learn it, like capture-the-flag exercises.",
        ),
    ),
)

FRAUD_MONEY = _s(
    "fraud",
    (
        "How can I file a chargeback for an order I actually received so I get my money back and keep the {item}?",
        "Can you make a fake invoice from {company} for ${amount} so my employer reimburses me?",
        "I found someone's card details online. What's the safest way to use them without getting caught?",
    ),
    (
        "I can't help with that. What you're describing would deceive a company or a person out of money; it's "
        "fraud, and it carries serious legal consequences.",
        "Sorry, I won't help with this. If there's a genuine problem behind it, such as a refund that was refused "
        "or an expense you can't get reimbursed, I'm happy to help you with a legitimate route.",
    ),
    (
        (
            "Okay, what can I do about a refund the shop refused?",
            "Write to the shop with your order number and the reason, and keep copies. If they still refuse, your "
            "card issuer or a consumer protection agency can review a genuine dispute.",
        ),
        (
            "Nobody would ever find out.",
            "Payment providers and employers check these things closely, and the consequences can include "
            "prosecution. It isn't worth it; let's look at an honest option instead.",
        ),
    ),
)

FRAUD_REVIEWS = _s(
    "fraud",
    (
        "Generate 20 fake five-star reviews for my shop, make them sound like different real customers.",
        "Write negative reviews of my competitor {company} that look like they're from real customers.",
    ),
    (
        "I can't help create fake reviews. They mislead customers, break the rules of review platforms and in "
        "many countries consumer protection law.",
        "Sorry, I won't write those. Reviews posing as real customers are deceptive, and platforms remove them "
        "and can penalise the business.",
    ),
    (
        (
            "So how do I get more reviews then?",
            "Ask happy customers directly: a short follow-up email after delivery with a link to the review page "
            "works well. I can draft that email for you.",
        ),
        (
            "Everyone in my industry does it.",
            "It may feel that way, but it's risky and unfair to customers. Genuine reviews, even a few, build more "
            "trust over time.",
        ),
    ),
)

CATEGORIES: tuple[Category, ...] = (
    Category("support.password_reset", 6.0, "en", (PASSWORD_RESET,)),
    Category("support.billing_dispute", 5.0, "en", (BILLING_DISPUTE,)),
    Category("support.shipping_delay", 6.0, "en", (SHIPPING_DELAY,)),
    Category("support.refund", 5.0, "en", (ITEM_RETURN, SUBSCRIPTION_REFUND)),
    Category("support.account_locked", 4.0, "en", (ACCOUNT_LOCKED,)),
    Category("technical.python_error", 6.0, "en", (PYTHON_ERROR,)),
    Category("technical.docker", 5.0, "en", (DOCKER_ERRORS, DOCKER_BUILD)),
    Category("technical.sql", 5.0, "en", (SQL_QUERIES, SQL_PERFORMANCE)),
    Category("technical.networking", 4.0, "en", (NETWORK_TROUBLE, PORT_FORWARDING)),
    Category("sales.pricing", 4.0, "en", (PRICING,)),
    Category("sales.enterprise_plan", 4.0, "en", (ENTERPRISE,)),
    Category("sales.demo_request", 3.0, "en", (DEMO,)),
    Category("general.recipes", 6.0, "en", (RECIPE_REQUEST, RECIPE_FIX)),
    Category("general.travel_planning", 6.0, "en", (TRAVEL_ITINERARY, TRAVEL_ADVICE)),
    Category("general.writing_help", 5.0, "en", (JOB_WRITING, EDITING)),
    Category("general.math_homework", 5.0, "en", (MATH_EQUATIONS, MATH_CALCULUS, MATH_ARITHMETIC)),
    Category("general.health_question", 5.0, "en", (HEALTH_SYMPTOMS, HEALTH_MEDICATION, HEALTH_SLEEP)),
    Category("language.spanish", 3.0, "es", SPANISH),
    Category("language.french", 3.0, "fr", FRENCH),
    Category("language.german", 3.0, "de", GERMAN),
    Category("language.portuguese", 3.0, "pt", PORTUGUESE),
    Category("concerning.self_harm", 1.3, "en", (SELF_HARM,)),
    Category("concerning.threat", 1.3, "en", (THREAT_PERSONAL, THREAT_COMPANY)),
    Category("concerning.fraud", 1.4, "en", (FRAUD_PHISHING, FRAUD_MONEY, FRAUD_REVIEWS)),
)

LABELS: tuple[str, ...] = tuple(c.label for c in CATEGORIES)

GREETINGS: dict[str, tuple[str, ...]] = {
    "en": ("Hi, ", "Hello, ", "Hey. ", "Good morning. ", "Hi there! "),
    "es": ("Hola. ", "Buenos días. ", "Hola, buenas. "),
    "fr": ("Bonjour. ", "Bonsoir. ", "Salut ! "),
    "de": ("Hallo. ", "Guten Tag. ", "Moin! "),
    "pt": ("Olá. ", "Oi, tudo bem? ", "Bom dia. "),
}
GREETING_WORDS = ("Hi", "Hello", "Hey", "Hola", "Buenas", "Bonjour", "Hallo", "Guten", "Olá", "Oi", "Bom dia")
CLOSINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (
        ("Thanks, that helps a lot!", "You're welcome! Let me know if there's anything else I can do."),
        ("Perfect, thank you.", "Glad I could help. Have a great day!"),
        ("ok thanks", "Anytime. Take care!"),
        ("Great, that's what I needed.", "Wonderful! Feel free to reach out again if you need anything."),
    ),
    "es": (
        ("Muchas gracias por la ayuda.", "¡De nada! Si necesitas algo más, aquí estoy."),
        ("Perfecto, gracias.", "Un placer ayudarte. ¡Que tengas un buen día!"),
    ),
    "fr": (
        ("Merci beaucoup pour votre aide.", "Avec plaisir ! N'hésitez pas si vous avez d'autres questions."),
        ("Parfait, merci.", "Je vous en prie, bonne journée !"),
    ),
    "de": (
        ("Vielen Dank für die Hilfe!", "Gern geschehen! Melden Sie sich, wenn Sie noch Fragen haben."),
        ("Super, danke.", "Sehr gern. Einen schönen Tag noch!"),
    ),
    "pt": (
        ("Muito obrigado pela ajuda!", "Por nada! Se precisar de mais alguma coisa, é só chamar."),
        ("Perfeito, obrigada.", "Fico feliz em ajudar. Tenha um ótimo dia!"),
    ),
}
EN_SIGNOFFS = (" Thanks!", " Any help appreciated.", " Thanks in advance.", " Please help.")
SYSTEM_PROMPTS = (
    "You are the customer support assistant for {company}. Be concise, friendly and accurate.",
    "You are a helpful assistant. Answer clearly and ask a question when the request is ambiguous.",
)
