"""Title normalisation: two spellings of one film agree, different films do not."""
import pytest

from course_utils.text import match_titles, normalise_title


@pytest.mark.parametrize("a, b", [
    ("The Lion King", "Lion King, The"),
    ("the lion king", "Lion King, The (1994)"),
    ('"The Lion King."', "Lion King, The"),
    ("Les Misérables", "Misérables, Les"),
    ("Das Boot", "Boot, Das"),
    ("L'Enfer", "Enfer, L'"),
    ("Toy Story (1995)", "Toy Story"),
    ("Star Wars", "Star Wars (1977)"),
    ("Seven", "Seven (Se7en)"),
    ("Schindlers List", "Schindler's List"),
    ("Beauty & the Beast", "Beauty and the Beast"),
    ("A Clockwork Orange", "Clockwork Orange, A"),
    ("  ALIEN!  ", "Alien"),
])
def test_spellings_of_one_title_agree(a, b):
    assert normalise_title(a) == normalise_title(b)


@pytest.mark.parametrize("a, b", [("The Lion King", "The Lion King 2"), ("Alien", "Aliens"),
                                  ("Toy Story", "Toy Story 2")])
def test_different_titles_stay_apart(a, b):
    assert normalise_title(a) != normalise_title(b)


def test_an_article_inside_a_title_is_kept():
    assert normalise_title("Beauty and the Beast") == "beauty and the beast"
    assert normalise_title("A Fish Called Wanda") == "fish called wanda"


def test_match_titles_finds_the_catalogue_spelling():
    catalogue = ["Toy Story", "Lion King, The", "Aladdin", "Lion King, The"]
    assert match_titles("The Lion King", catalogue) == ["Lion King, The", "Lion King, The"]
    assert match_titles("Aladdin (1992).", catalogue) == ["Aladdin"]
    assert match_titles("Shrek", catalogue) == []
    assert match_titles("...", catalogue) == []


def test_bad_input_says_what_was_expected():
    with pytest.raises(TypeError, match="title must be a string"):
        normalise_title(None)
    with pytest.raises(ValueError, match="catalogue is empty"):
        match_titles("Alien", [])


def test_display_title_moves_the_article_back():
    from course_utils.text import display_title
    assert display_title("Lion King, The") == "The Lion King"
    assert display_title("Clockwork Orange, A (1971)") == "A Clockwork Orange (1971)"
    assert display_title("Toy Story") == "Toy Story"
    assert normalise_title(display_title("Wizard of Oz, The")) == normalise_title("Wizard of Oz, The")


def test_find_in_catalogue_reads_a_title_out_of_a_sentence():
    from course_utils.text import find_in_catalogue
    catalogue = ["Toy Story", "Lion King, The", "Aladdin"]
    answer = 'The movie you\'re referring to is "The Lion King" by Rudolph Redula.'
    assert find_in_catalogue(answer, catalogue) == ("The Lion King", ["Lion King, The"])
    assert find_in_catalogue("**Aladdin**", catalogue) == ("Aladdin", ["Aladdin"])
    assert find_in_catalogue("Aladdin.\nIt is a great film.", catalogue) == ("Aladdin.", ["Aladdin"])
    assert find_in_catalogue("I would suggest Shrek.", catalogue) == (None, [])
