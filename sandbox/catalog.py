"""The synthetic company's marketing assets: e-mails, pages, forms, white papers and webinars."""

NEWSLETTER_FORM = "Newsletter Signup"
DEMO_FORM = "Demo Request"
TRIAL_FORM = "Free Trial Signup"
CONTACT_SALES_FORM = "Contact Sales"
WHITEPAPER_FORM = "Whitepaper - {}"
WEBINAR_FORM = "Webinar Registration - {}"

WHITEPAPERS = (
    "State of RevOps 2026",
    "Lead Scoring Playbook",
    "Buyer's Guide to Lead Routing",
    "SLA Benchmarks Report",
)
WEBINARS = ("Pipeline Alignment Live", "RevOps Office Hours", "Scoring Models That Sales Trusts")
EMAILS = (
    ("Nurture Q4", "Welcome to the newsletter"),
    ("Nurture Q4", "How aligned teams grow 20% a year"),
    ("Nurture Q4", "Case study: Northwind cut response time to 2 hours"),
    ("Product Update", "November release notes"),
    ("Webinar Invite", "Join Pipeline Alignment Live"),
    ("Trial Nurture", "Getting started with your trial"),
)
AWARENESS_PAGES = ("/", "/blog/lead-scoring-101", "/blog/what-is-an-mql", "/blog/sla-for-sales", "/about")
CONSIDERATION_PAGES = ("/product", "/product/routing", "/customers", "/integrations/salesforce")
DECISION_PAGES = ("/pricing", "/pricing/enterprise", "/security")

SITE = "https://www.handoff-demo.example"

FIT_INDUSTRIES = ("Software", "Financial Services", "Professional Services")
OTHER_INDUSTRIES = ("Retail", "Education", "Government", "Hospitality", "Non-profit")
FIT_TITLES = ("VP of Sales", "Head of Revenue Operations", "Director of Marketing", "CMO", "Marketing Operations Manager")
OTHER_TITLES = ("Student", "Intern", "Freelancer", "Office Assistant", "Consultant")
FIT_COUNTRIES = ("US", "GB", "DE", "CA", "NL")
OTHER_COUNTRIES = ("BR", "IN", "NG", "ID", "VN")
CHANNELS = ("Paid Search", "Organic Search", "Webinar", "Referral", "Event", "Social", "Content Syndication")
PRODUCTS = ("Scoring", "Routing", "SLA")
FREE_MAIL = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com")
COMPETITOR_DOMAINS = ("rivalrevops.example",)
FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam", "Maya",
    "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe",
)
LAST_NAMES = (
    "Adams", "Banerjee", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova", "Jones", "Kowalski",
    "Lopez", "Mensah", "Nakamura", "Okafor", "Petrov", "Quist", "Rossi", "Schmidt", "Tanaka", "Usman", "Varga",
)
COMPANY_WORDS = ("North", "Blue", "Iron", "Bright", "Silver", "Summit", "Harbor", "Pine", "Vector", "Atlas", "Nova")
COMPANY_SUFFIXES = ("wind", "stone", "works", "labs", "data", "systems", "cloud", "logic", "metrics", "forge")
