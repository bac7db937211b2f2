from accounts.models import Membership


def membership(request):
    """Puts the signed-in user's membership (organisation and role) in every template."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"membership": None}
    return {
        "membership": Membership.objects.select_related("organisation").filter(user=user).first()
    }
