"""A stand-in for the AI model behind "remix"."""


class AIError(Exception):
    """The model failed; nothing useful came back."""


def fake_remix(recipe):
    return f"{recipe.title}, remixed: {recipe.ingredients} with a pinch of smoked paprika"
