"""Reading uploaded tables of any shape. (Interface; implemented by the ml_core work.)"""
