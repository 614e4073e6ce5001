"""Word lists behind plausible values. Fictional people and companies; RFC 2606 domains."""

from __future__ import annotations

FIRST_NAMES = (
    "Ava", "Liam", "Olivia", "Noah", "Emma", "Mateo", "Sofia", "Lucas", "Mia", "Ethan",
    "Amara", "Kenji", "Priya", "Omar", "Chloe", "Diego", "Hannah", "Yuki", "Elena", "Samuel",
    "Zara", "Leo", "Grace", "Ibrahim", "Nora", "Felix", "Isla", "Mohammed", "Clara", "Tomas",
    "Aisha", "Jonas", "Maya", "Daniel", "Lena", "Arjun", "Ruby", "Oscar", "Freya", "Hugo",
)
LAST_NAMES = (
    "Martin", "Nguyen", "Garcia", "Smith", "Kowalski", "Okafor", "Tanaka", "Rossi", "Muller",
    "Johnson", "Silva", "Patel", "Kim", "Haddad", "Larsen", "Dubois", "Fischer", "Moreno",
    "Novak", "Brown", "Ivanova", "Cohen", "Andersson", "Walker", "Costa", "Schmidt", "Lopez",
    "Chen", "Murphy", "Jensen", "Ali", "Romero", "Becker", "Hughes", "Sato", "Evans",
)
COMPANIES = (
    "Northwind Traders", "Contoso Ltd", "Fabrikam Inc", "Blue Harbor Logistics",
    "Lumen Analytics", "Granite Peak Software", "Sunrise Health", "Redwood Capital",
    "Brightline Media", "Atlas Robotics", "Cedar & Co", "Summit Outdoor Supply", "Helix Bio",
    "Orbit Payments", "Maple Street Bakery", "Silverline Energy", "Nimbus Cloud",
    "Quartz Legal", "Tidewater Shipping", "Vantage Retail",
)
CITIES = (
    ("Lisbon", "Portugal", "PT", "PRT"), ("Toronto", "Canada", "CA", "CAN"),
    ("Berlin", "Germany", "DE", "DEU"), ("Austin", "United States", "US", "USA"),
    ("Osaka", "Japan", "JP", "JPN"), ("Lyon", "France", "FR", "FRA"),
    ("Melbourne", "Australia", "AU", "AUS"), ("Barcelona", "Spain", "ES", "ESP"),
    ("Nairobi", "Kenya", "KE", "KEN"), ("Bangalore", "India", "IN", "IND"),
    ("Copenhagen", "Denmark", "DK", "DNK"), ("Sao Paulo", "Brazil", "BR", "BRA"),
    ("Dublin", "Ireland", "IE", "IRL"), ("Seoul", "South Korea", "KR", "KOR"),
    ("Milan", "Italy", "IT", "ITA"), ("Amsterdam", "Netherlands", "NL", "NLD"),
    ("Denver", "United States", "US", "USA"), ("Manchester", "United Kingdom", "GB", "GBR"),
    ("Zurich", "Switzerland", "CH", "CHE"), ("Mexico City", "Mexico", "MX", "MEX"),
    ("Stockholm", "Sweden", "SE", "SWE"), ("Cape Town", "South Africa", "ZA", "ZAF"),
    ("Singapore", "Singapore", "SG", "SGP"), ("Auckland", "New Zealand", "NZ", "NZL"),
)
REGIONS = ("California", "Ontario", "Bavaria", "Texas", "Catalonia", "Queensland", "Lombardy",
           "Oregon", "Quebec", "New South Wales")
STREETS = ("Main St", "Oak Avenue", "Harbor Road", "Elm Street", "Station Road", "Maple Drive",
           "King Street", "Park Lane", "Mill Road", "Cedar Court", "Riverside Way", "High Street")
TIMEZONES = ("Europe/Lisbon", "America/Toronto", "Europe/Berlin", "America/Chicago",
             "Asia/Tokyo", "Europe/Paris", "Australia/Melbourne", "Asia/Kolkata", "UTC")
LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "pt-BR", "ja-JP", "it-IT")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "INR", "BRL")
DOMAINS = ("example.com", "example.org", "example.net")
STATUSES = ("active", "pending", "completed", "open", "closed", "in_progress", "archived",
            "approved", "draft", "failed")
PRIORITIES = ("low", "medium", "high", "urgent")
CATEGORIES = ("general", "billing", "support", "sales", "engineering", "marketing",
              "operations", "finance", "product", "legal")
JOB_TITLES = ("Account Manager", "Software Engineer", "Product Designer", "Sales Director",
              "Support Specialist", "Data Analyst", "Operations Lead", "Marketing Manager",
              "Chief Financial Officer", "Customer Success Manager", "Project Coordinator")
DEPARTMENTS = ("Sales", "Engineering", "Marketing", "Finance", "Support", "Operations",
               "Human Resources", "Legal", "Product")
PRODUCT_ADJECTIVES = ("Classic", "Wireless", "Ergonomic", "Organic", "Compact", "Premium",
                      "Portable", "Recycled", "Smart", "Vintage", "Lightweight", "Deluxe")
PRODUCT_NOUNS = ("Desk Lamp", "Coffee Grinder", "Backpack", "Headphones", "Water Bottle",
                 "Notebook", "Office Chair", "Yoga Mat", "Keyboard", "Tea Kettle", "Sneakers",
                 "Monitor Stand", "Rain Jacket", "Cutting Board")
TITLE_TOPICS = ("Quarterly business review", "Onboarding checklist", "Release notes",
                "Customer feedback summary", "Budget proposal", "Weekly team sync",
                "Incident postmortem", "Marketing plan", "Contract renewal", "Roadmap update",
                "Security audit findings", "Hiring plan", "Product launch timeline",
                "Support ticket triage", "Invoice reconciliation")
SENTENCES = (
    "Follow-up scheduled with the customer to confirm the next steps.",
    "The request was reviewed and approved by the account owner.",
    "Shipment left the warehouse and is expected to arrive within three business days.",
    "Meeting notes have been shared with all attendees.",
    "The issue was reproduced and a fix is planned for the next release.",
    "Pricing was updated to reflect the new annual plan.",
    "Customer asked for a detailed breakdown of last month's invoice.",
    "All tasks in this milestone are complete except the final review.",
    "The document was revised to include the latest legal feedback.",
    "Payment was received and the order is being prepared.",
    "Access was granted to the shared workspace for the new team members.",
    "Draft is ready for review; comments are welcome until Friday.",
)
WORDS = (
    "alpha", "amber", "beacon", "birch", "cobalt", "coral", "delta", "ember", "falcon",
    "garnet", "harbor", "indigo", "juniper", "kestrel", "lagoon", "maple", "meadow", "nova",
    "onyx", "orbit", "pioneer", "quartz", "raven", "sierra", "summit", "tango", "tundra",
    "umber", "violet", "willow", "zephyr", "cedar", "atlas", "lumen", "prairie", "sable",
)
TAGS = ("urgent", "customer", "internal", "follow-up", "vip", "billing", "renewal", "beta",
        "priority", "archived", "q3", "feedback", "partner", "onboarding")
MIME_TYPES = ("application/pdf", "image/png", "text/csv", "application/json", "image/jpeg",
              "text/plain")
FILE_STEMS = ("report", "invoice", "summary", "contract", "presentation", "export", "notes",
              "budget", "roadmap", "receipt")
FILE_EXTENSIONS = ("pdf", "csv", "docx", "png", "xlsx", "txt", "json")
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#17becf", "#3a7bd5", "#f4a261")
HOST_PREFIXES = ("api", "www", "app", "mail", "cdn", "portal", "files")
URL_SECTIONS = ("items", "docs", "records", "pages", "resources")
