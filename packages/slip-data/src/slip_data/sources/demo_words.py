"""The demo catalogue's words: category and subcategory names, title parts, brands, features,
descriptions and review snippets. Data only: demo_lines.py writes them into the JSON lines."""

from slip_data.categories import CATEGORIES

# category -> (readable root name, ((subcategory name, title noun), ...) with 4 subcategories)
TAXONOMY: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "All_Beauty": ("All Beauty", (
        ("Skin Care", "Face Cream"), ("Hair Care", "Shampoo"),
        ("Fragrance", "Perfume"), ("Makeup", "Lipstick"))),
    "Amazon_Fashion": ("Amazon Fashion", (
        ("Wallets & Card Cases", "Wallet"), ("Sunglasses & Eyewear", "Sunglasses"),
        ("Hats & Caps", "Baseball Cap"), ("Scarves & Wraps", "Scarf"))),
    "Appliances": ("Appliances", (
        ("Refrigerator Parts", "Water Filter"), ("Washer & Dryer Parts", "Dryer Belt"),
        ("Microwaves", "Microwave"), ("Range Hoods", "Range Hood"))),
    "Arts_Crafts_and_Sewing": ("Arts, Crafts & Sewing", (
        ("Painting", "Acrylic Paint"), ("Sewing", "Sewing Thread"),
        ("Knitting & Crochet", "Yarn"), ("Scrapbooking", "Sticker Sheet"))),
    "Automotive": ("Automotive", (
        ("Car Care", "Car Wax"), ("Lights & Lighting", "Headlight Bulb"),
        ("Tires & Wheels", "Tire Gauge"), ("Interior Accessories", "Seat Cover"))),
    "Baby_Products": ("Baby Products", (
        ("Feeding", "Baby Bottle"), ("Nursery", "Crib Sheet"),
        ("Strollers", "Stroller"), ("Diapering", "Diaper Bag"))),
    "Beauty_and_Personal_Care": ("Beauty & Personal Care", (
        ("Oral Care", "Toothbrush"), ("Shaving & Hair Removal", "Razor"),
        ("Nail Care", "Nail Polish"), ("Bath & Body", "Body Wash"))),
    "Books": ("Books", (
        ("Mystery & Thriller", "Thriller Novel"), ("Cookbooks", "Cookbook"),
        ("Children's Books", "Picture Book"), ("Science Fiction", "Sci-Fi Novel"))),
    "CDs_and_Vinyl": ("CDs & Vinyl", (
        ("Rock", "Rock Album"), ("Jazz", "Jazz Record"),
        ("Classical", "Symphony"), ("Pop", "Pop Single"))),
    "Cell_Phones_and_Accessories": ("Cell Phones & Accessories", (
        ("Cases & Covers", "Phone Case"), ("Screen Protectors", "Screen Protector"),
        ("Chargers & Power Adapters", "Wall Charger"), ("Mounts & Stands", "Car Mount"))),
    "Clothing_Shoes_and_Jewelry": ("Clothing, Shoes & Jewelry", (
        ("Shoes", "Sneakers"), ("Jewelry", "Necklace"),
        ("Dresses", "Maxi Dress"), ("Watches", "Wristwatch"))),
    "Digital_Music": ("Digital Music", (
        ("Dance & Electronic", "Dance Track"), ("Country", "Country Ballad"),
        ("Soundtracks", "Film Score"), ("Rap & Hip-Hop", "Hip-Hop Beat"))),
    "Electronics": ("Electronics", (
        ("Headphones & Earbuds", "Headphones"), ("Cameras & Photo", "Camera"),
        ("Portable Speakers", "Speaker"), ("Computer Keyboards", "Keyboard"))),
    "Gift_Cards": ("Gift Cards", (
        ("Birthday", "Birthday Gift Card"), ("Holiday", "Holiday Gift Card"),
        ("Restaurants", "Dining Gift Card"), ("Entertainment", "Cinema Gift Card"))),
    "Grocery_and_Gourmet_Food": ("Grocery & Gourmet Food", (
        ("Coffee", "Ground Coffee"), ("Snacks", "Trail Mix"),
        ("Tea", "Green Tea"), ("Pantry Staples", "Olive Oil"))),
    "Handmade_Products": ("Handmade Products", (
        ("Handmade Jewelry", "Beaded Bracelet"), ("Home Decor", "Macrame Wall Hanging"),
        ("Pottery", "Ceramic Mug"), ("Candles", "Soy Candle"))),
    "Health_and_Household": ("Health & Household", (
        ("Vitamins & Supplements", "Multivitamin"), ("Household Supplies", "Laundry Detergent"),
        ("Medical Supplies", "First Aid Kit"), ("Sleep & Snoring", "Sleep Mask"))),
    "Health_and_Personal_Care": ("Health & Personal Care", (
        ("Personal Care", "Electric Shaver"), ("Massage & Relaxation", "Massage Gun"),
        ("Health Monitors", "Blood Pressure Monitor"), ("Thermometers", "Thermometer"))),
    "Home_and_Kitchen": ("Home & Kitchen", (
        ("Cookware", "Frying Pan"), ("Bedding", "Duvet Cover"),
        ("Lamps & Lighting", "Table Lamp"), ("Storage & Organization", "Storage Bin"))),
    "Industrial_and_Scientific": ("Industrial & Scientific", (
        ("Lab Supplies", "Beaker"), ("Safety Equipment", "Safety Goggles"),
        ("Fasteners", "Hex Bolt"), ("Test & Measurement", "Multimeter"))),
    "Kindle_Store": ("Kindle Store", (
        ("Romance", "Romance eBook"), ("Fantasy", "Fantasy eBook"),
        ("Biographies & Memoirs", "Memoir"), ("Self-Help", "Self-Help Guide"))),
    "Magazine_Subscriptions": ("Magazine Subscriptions", (
        ("News & Politics", "News Magazine"), ("Cooking, Food & Wine", "Food Magazine"),
        ("Travel", "Travel Magazine"), ("Technology", "Tech Magazine"))),
    "Movies_and_TV": ("Movies & TV", (
        ("Action & Adventure", "Action Blu-ray"), ("Documentary", "Documentary DVD"),
        ("Animation", "Animated Film"), ("TV Series", "TV Box Set"))),
    "Musical_Instruments": ("Musical Instruments", (
        ("Guitars", "Acoustic Guitar"), ("Drums & Percussion", "Snare Drum"),
        ("Keyboards & Pianos", "Digital Piano"), ("Microphones", "Microphone"))),
    "Office_Products": ("Office Products", (
        ("Writing Instruments", "Gel Pen"), ("Paper & Notebooks", "Spiral Notebook"),
        ("Desk Accessories", "Desk Organizer"), ("Printer Supplies", "Ink Cartridge"))),
    "Patio_Lawn_and_Garden": ("Patio, Lawn & Garden", (
        ("Gardening & Watering", "Garden Hose"), ("Grills & Outdoor Cooking", "Charcoal Grill"),
        ("Outdoor Decor", "Solar Lantern"), ("Plants & Seeds", "Seed Packet"))),
    "Pet_Supplies": ("Pet Supplies", (
        ("Dogs", "Dog Leash"), ("Cats", "Cat Scratcher"),
        ("Fish & Aquatic Pets", "Aquarium Filter"), ("Birds", "Bird Feeder"))),
    "Software": ("Software", (
        ("Antivirus & Security", "Antivirus Suite"), ("Photo Editing", "Photo Editor"),
        ("Business & Office", "Accounting Software"),
        ("Education & Reference", "Language Course"))),
    "Sports_and_Outdoors": ("Sports & Outdoors", (
        ("Camping & Hiking", "Sleeping Bag"), ("Exercise & Fitness", "Yoga Mat"),
        ("Cycling", "Bike Helmet"), ("Water Sports", "Swim Goggles"))),
    "Subscription_Boxes": ("Subscription Boxes", (
        ("Snack Boxes", "Snack Box"), ("Beauty Boxes", "Beauty Box"),
        ("Book Boxes", "Book Club Box"), ("Pet Boxes", "Pet Treat Box"))),
    "Tools_and_Home_Improvement": ("Tools & Home Improvement", (
        ("Power Tools", "Cordless Drill"), ("Hand Tools", "Screwdriver Set"),
        ("Ceiling Fans", "Ceiling Fan"), ("Plumbing", "Kitchen Faucet"))),
    "Toys_and_Games": ("Toys & Games", (
        ("Puzzles", "Jigsaw Puzzle"), ("Building Toys", "Building Blocks"),
        ("Dolls & Accessories", "Fashion Doll"), ("Board Games", "Board Game"))),
    "Video_Games": ("Video Games", (
        ("PlayStation 5", "PS5 Game"), ("Nintendo Switch", "Switch Game"),
        ("PC Gaming", "Gaming Mouse"), ("Xbox Series X", "Xbox Controller"))),
}  # fmt: skip

# Optional third level of `categories`: "<subcategory> <facet>".
LEAF_FACETS = ("Essentials", "Sets & Bundles", "Accessories")

# One row per community: the brands (stores) that sell its style.
BRANDS = (
    ("Northwind", "Nordvik", "Polarline"), ("Solara", "Sunmere", "Heliox"),
    ("Verdant", "Mossway", "Fernhollow"), ("Ironclad", "Forgeworks", "Anvilry"),
    ("Lumina", "Brightlane", "Glowmark"), ("Oakridge", "Timberly", "Cedarfield"),
    ("Bluecrest", "Tidewater", "Marinell"), ("Emberly", "Cinderhouse", "Pyrosa"),
    ("Velvetine", "Plushmere", "Satinique"), ("Quartzite", "Crystalis", "Prismo"),
    ("Urbanite", "Metrolux", "Citysmith"), ("Wildroot", "Trailwise", "Canyonic"),
)  # fmt: skip

PRODUCT_LINES = (
    "Nimbus", "Aurora", "Vertex", "Zephyr", "Orion", "Nova", "Atlas", "Echo", "Summit", "Pulse",
    "Halo", "Vista", "Comet", "Ripple", "Juniper", "Cascade", "Harbor", "Meadow", "Sierra",
    "Quill", "Tundra", "Willow", "Falcon", "Lotus", "Onyx", "Pebble", "Saffron", "Topaz",
)  # fmt: skip
ADJECTIVES = (
    "Premium", "Compact", "Classic", "Deluxe", "Everyday", "Pro", "Lightweight", "Durable",
    "Eco-Friendly", "Portable", "Ultra", "Essential", "Modern", "Vintage", "Professional", "Mini",
    "Advanced", "Signature", "Original", "Heavy Duty",
)  # fmt: skip
VARIANTS = (
    "Matte Black", "White", "Navy Blue", "Rose Gold", "Silver", "Forest Green", "Pack of 2",
    "Pack of 3", "Set of 4", "Large", "Medium", "Small", "12 oz", "8 Count", "2023 Edition",
    "Travel Size", "Family Size", "Gray", "Red", "Natural",
)  # fmt: skip
COLOURS = ("Black", "White", "Blue", "Red", "Green", "Gray", "Pink", "Beige", "Multicolor")
TITLE_TEMPLATES = (
    "{line} {adj} {noun}, {variant}",
    "{adj} {noun} by {line} - {variant}",
    "{line} {noun} ({variant})",
)
# Web-caption noise: titles that name no subcategory at all.
GENERIC_TITLES = (
    "Great value, top quality item",
    "Best Seller - Fast Shipping",
    "New Arrival 2023 Hot Sale",
    "Perfect Gift for Men and Women",
    "Premium Quality Product",
    "Limited Edition Special Offer",
    "Top Rated Choice, Satisfaction Guaranteed",
    "Item 1",
)
FEATURES = (
    "Built to last with durable materials",
    "Easy to clean and maintain",
    "Ships in recyclable packaging",
    "Backed by a 1-year warranty",
    "Lightweight and easy to carry",
    "Designed for everyday use",
    "Great gift for friends & family",
    "Tested for quality and safety",
    'Measures 8" x 5" x 2"',
    "Satisfaction guaranteed or your money back",
    "Made with responsibly sourced materials",
    "Modern look that fits any style",
)
DESCRIPTIONS = (
    "This {noun} from {store} is designed for everyday use.",
    "Meet the {line} {noun}: {store} quality at a fair price.",
    "{store} makes every {noun} with care. Enjoy!",
)

# Review snippets by rating 1..5; texts are opener [+ mention of the noun] [+ extra].
REVIEW_TITLES = (
    ("Terrible", "Broke after a week", "Do not buy", "Waste of money", "Awful", "Returned it"),
    ("Disappointed", "Not great", "Meh", "Cheaply made", "Not as pictured", "Two stars"),
    ("It's okay", "Average", "Does the job", "Mixed feelings", "Fine for the price", "OK"),
    ("Pretty good", "Nice", "Works well", "Good value", "Happy with it", "Solid"),
    ("Love it!", "Excellent", "Five stars", "Perfect", "Highly recommend", "Great purchase"),
)  # fmt: skip
REVIEW_OPENERS = (
    ("Stopped working almost right away.", "Poor quality, very disappointed.",
     "Nothing like the description.", "Would give zero stars if I could.",
     "Arrived damaged and support did not help.", "Complete waste of money."),
    ("Not what I expected.", "Quality could be better.", "It works, barely.",
     "Smaller than it looked online.", "Feels flimsy.", "I expected more for the price."),
    ("It's fine.", "Does what it says, nothing more.", "Decent but not amazing.",
     "Okay for occasional use.", "Some good points, some bad.", "Average quality."),
    ("Works well so far.", "Good quality for the price.", "Pretty happy with this.",
     "Nice design and sturdy.", "Does the job nicely.", "Would buy again."),
    ("Absolutely love it!", "Exceeded my expectations.", "Best purchase this year.",
     "Great quality, fast delivery.", "Exactly as described.", "My whole family loves it."),
)  # fmt: skip
REVIEW_MENTIONS = (
    "Compared to other {noun} I have owned, this one is better.",
    "Bought this {noun} as a gift.",
    "Good {noun} for the price.",
    "I use the {noun} every day.",
    "Second {noun} I have bought from this seller.",
)
REVIEW_EXTRAS = (
    "Fast shipping &amp; well packed.",
    "Five stars 👍",
    "Love it 😍😍",
    "Muy bueno, lo recomiendo.",
    "Sehr gut, gerne wieder.",
    "Works great!!! 💯",
    "Arrived on time &amp; as described.",
    'Note: the color is a bit "darker" than the photo.',
)

# the title noun of each global subcategory (category index * 4 + subcategory)
NOUNS = tuple(noun for c in CATEGORIES for _, noun in TAXONOMY[c][1])
