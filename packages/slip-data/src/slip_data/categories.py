"""The 33 published categories of Amazon Reviews 2023 and the `--categories` parser."""

CATEGORIES: tuple[str, ...] = (
    "All_Beauty", "Amazon_Fashion", "Appliances", "Arts_Crafts_and_Sewing", "Automotive",
    "Baby_Products", "Beauty_and_Personal_Care", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics",
    "Gift_Cards", "Grocery_and_Gourmet_Food", "Handmade_Products", "Health_and_Household",
    "Health_and_Personal_Care", "Home_and_Kitchen", "Industrial_and_Scientific", "Kindle_Store",
    "Magazine_Subscriptions", "Movies_and_TV", "Musical_Instruments", "Office_Products",
    "Patio_Lawn_and_Garden", "Pet_Supplies", "Software", "Sports_and_Outdoors",
    "Subscription_Boxes", "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)  # fmt: skip


def raw_relpaths(category: str) -> tuple[str, str]:
    """Where a category's meta and review files sit under the dataset's raw folder."""
    return f"meta_categories/meta_{category}.jsonl.gz", f"review_categories/{category}.jsonl.gz"


class UnknownCategoryError(ValueError):
    """A `--categories` entry that is not one of the published names."""


def parse_categories(spec: str) -> list[str]:
    """Turn `all` or a comma list into category names, in the published order, without repeats."""
    spec = spec.strip()
    if spec == "all":
        return list(CATEGORIES)
    wanted = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in CATEGORIES]
    if unknown or not wanted:
        raise UnknownCategoryError(
            f"unknown categories {', '.join(unknown) or '(none given)'}; "
            f"valid names: all, {', '.join(CATEGORIES)}"
        )
    return [name for name in CATEGORIES if name in wanted]
